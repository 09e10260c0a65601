"""``Authorization: Bearer`` passed through to a Dovecot whose oauth2 passdb asks a
token-introspection endpoint (RFC 7662) run by the test; the upstream decides whose a token is."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs

import httpx
import pytest
import redis

from gateway.credentials import Mechanism
from gateway.imap.connection import ImapConnection
from gateway.imap.errors import AuthenticationFailed
from tests.conftest import gateway_settings, running_gateway, serving
from tests.imap.upstream import endpoint
from tests.servers import LOOPBACK, Dovecot, make_data_dir

MAIL = "urn:ietf:params:jmap:mail"
BASIC = 'Basic realm="jmap-gateway", charset="UTF-8"'


def jwt(claims: dict[str, str], signature: str) -> str:
    """A JWT-shaped token (RFC 7519): the gateway reads its payload, the IdP its signature."""

    def part(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{signature}"


ALICE_TOKEN = jwt({"username": "ALICE"}, "alice-sig")  # the upstream spells her alice
CARRIES_BOB = jwt({"username": "bob"}, "alice-sig-2")  # claims bob, issued to alice
OPAQUE = "opaque-token-of-alice"
# What the identity provider says of each token (RFC 7662 2.2); anything else is inactive.
ISSUED = {ALICE_TOKEN: "alice", CARRIES_BOB: "alice", OPAQUE: "alice"}


class Introspection(BaseHTTPRequestHandler):
    asked: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
        token = parse_qs(body).get("token", [""])[0]
        self.asked.append(token)
        user = ISSUED.get(token)
        answer = {"active": True, "username": user} if user else {"active": False}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def introspection() -> Iterator[str]:
    server = ThreadingHTTPServer((LOOPBACK, 0), Introspection)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{LOOPBACK}:{server.server_address[1]}/introspect"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def oauth_dovecot(introspection: str) -> Iterator[Dovecot]:
    yield from serving(
        Dovecot(make_data_dir("jg-dovecot-"), oauth2_introspection_url=introspection)
    )


async def session(
    http: httpx.AsyncClient, auth: httpx.Auth | None = None, token: str | None = None
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return await http.get("/jmap/session", auth=auth, headers=headers)


async def test_a_token_opens_the_users_one_account(oauth_dovecot: Dovecot, redis_url: str) -> None:
    settings = gateway_settings(oauth_dovecot.url, redis_url, oauth_username_claim="username")
    password = httpx.BasicAuth("alice", oauth_dovecot.users["alice"])
    async with (
        running_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        challenge = (await session(http)).headers["www-authenticate"]
        assert (
            challenge == 'Basic realm="jmap-gateway", charset="UTF-8", Bearer realm="jmap-gateway"'
        )
        by_token = await session(http, token=ALICE_TOKEN)
        assert by_token.status_code == 200, by_token.text
        by_password = await session(http, auth=password)
        asked = len(Introspection.asked)
        for _ in range(3):  # verifications are remembered: Dovecot is not asked again
            assert (await session(http, token=ALICE_TOKEN)).status_code == 200
        assert len(Introspection.asked) == asked
    assert by_token.json()["username"] == "ALICE"
    account = by_password.json()["primaryAccounts"][MAIL]
    assert by_token.json()["primaryAccounts"][MAIL] == account


async def test_the_upstream_decides_whose_a_token_is(
    oauth_dovecot: Dovecot, redis_url: str
) -> None:
    settings = gateway_settings(oauth_dovecot.url, redis_url, oauth_username_claim="username")
    async with (
        running_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        # A token issued to alice that claims bob, and one the identity provider never issued.
        for token in (CARRIES_BOB, jwt({"username": "alice"}, "forged")):
            refused = await session(http, token=token)
            assert refused.status_code == 401, token
            assert refused.headers["www-authenticate"].endswith(
                'Bearer realm="jmap-gateway", error="invalid_token"'
            )
            assert token in Introspection.asked  # Dovecot asked the identity provider
        for token in ("unknown-token", "not a token"):
            assert (await session(http, token=token)).status_code == 401


async def test_without_the_claim_dovecot_23_cannot_tell_the_user(
    oauth_dovecot: Dovecot, redis_url: str
) -> None:
    """RFC 7628 lets the server take the user from the token, but Dovecot 2.3 wants the
    authorization identity: without GATEWAY_OAUTH_USERNAME_CLAIM its tokens are refused."""
    async with (
        running_gateway(gateway_settings(oauth_dovecot.url, redis_url)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        assert (await session(http, token=OPAQUE)).status_code == 401
        assert (await session(http, token=ALICE_TOKEN)).status_code == 401


async def test_xoauth2_where_oauthbearer_is_not_offered(oauth_dovecot: Dovecot) -> None:
    conn = await ImapConnection.open(endpoint(oauth_dovecot))
    conn.capabilities -= {"AUTH=OAUTHBEARER"}
    await conn.login("alice", OPAQUE, mechanism=Mechanism.BEARER)
    assert "CONDSTORE" in conn.capabilities
    await conn.logout()
    conn = await ImapConnection.open(endpoint(oauth_dovecot))
    conn.capabilities -= {"AUTH=OAUTHBEARER"}
    with pytest.raises(AuthenticationFailed):
        await conn.login("alice", "unknown-token", mechanism=Mechanism.BEARER)
    await conn.logout()


async def test_tokens_never_reach_logs_or_redis(
    oauth_dovecot: Dovecot, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = gateway_settings(oauth_dovecot.url, redis_url, oauth_username_claim="username")
    async with (
        running_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        assert (await session(http, token=ALICE_TOKEN)).status_code == 200
        assert (await session(http, token="unknown-token")).status_code == 401
    client = redis.Redis.from_url(redis_url)
    stored = [client.get(key) or b"" for key in client.keys("*") if client.type(key) == b"string"]
    client.close()
    for token in (ALICE_TOKEN, "unknown-token", "alice-sig"):
        assert token not in caplog.text
        assert not any(token.encode() in value for value in stored)


async def test_a_server_without_oauth_says_basic_only(http: httpx.AsyncClient) -> None:
    for token in (None, ALICE_TOKEN):
        response = await session(http, token=token)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == BASIC
