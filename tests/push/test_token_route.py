"""POST /jmap/push/token on real gateways: only an authenticated caller gets a token, a token
opens only its own account's streams on any replica, and it is no credential for the API."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect

from gateway.app import create_app
from gateway.problems import HttpProblem
from gateway.push.tokens import TOKEN_PATH, verify_token
from gateway.services import Services
from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot

Replica = tuple[str, Services]


@pytest.fixture
async def replicas(dovecot: Dovecot, redis_url: str) -> AsyncIterator[list[Replica]]:
    """Two gateways on one Redis (one deployment: both use the secret kept in Redis)."""
    one_settings = gateway_settings(dovecot.url, redis_url)
    two_settings = gateway_settings(dovecot.url, redis_url)
    one_app, two_app = create_app(one_settings), create_app(two_settings)
    async with (
        running_gateway(one_settings, one_app) as one,
        running_gateway(two_settings, two_app) as two,
    ):
        yield [(one, one_app.state.services), (two, two_app.state.services)]


async def mint(base_url: str, auth: httpx.Auth | None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        return await http.post(TOKEN_PATH, auth=auth)


async def test_minted_for_the_caller_and_valid_on_every_replica(
    replicas: list[Replica], alice: httpx.BasicAuth
) -> None:
    (one, _), (two, two_svc) = replicas
    response = await mint(one, alice)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"token", "accountId", "expires", "streamUntil"}
    async with httpx.AsyncClient(base_url=two, timeout=30) as http:
        session = (await http.get("/jmap/session", auth=alice)).json()
    assert body["accountId"] == session["primaryAccounts"]["urn:ietf:params:jmap:mail"]

    verified = await verify_token(two_svc, body["token"])
    assert verified.account_id == body["accountId"]
    assert time.time() < verified.expires <= time.time() + 120 + 1
    assert verified.stream_until >= verified.expires
    assert await verify_token(two_svc, body["token"], account_id=body["accountId"]) == verified


async def test_mint_needs_credentials_the_upstream_takes(
    replicas: list[Replica], dovecot: Dovecot
) -> None:
    (one, _), _ = replicas
    for auth in (None, httpx.BasicAuth("alice", "not-her-password")):
        response = await mint(one, auth)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert "token" not in response.json()


async def test_alices_token_refused_for_bobs_account(
    replicas: list[Replica], alice: httpx.BasicAuth, bob: httpx.BasicAuth
) -> None:
    (one, svc), _ = replicas
    alice_token = (await mint(one, alice)).json()["token"]
    bob_account = (await mint(one, bob)).json()["accountId"]
    with pytest.raises(HttpProblem) as refused:
        await verify_token(svc, alice_token, account_id=bob_account)
    assert refused.value.body["status"] == 401
    # A browser must not answer with a login dialog: no Basic challenge for a token.
    assert refused.value.headers == {
        "WWW-Authenticate": 'Bearer realm="jmap-gateway", error="invalid_token"'
    }


async def test_tampered_token_refused(replicas: list[Replica], alice: httpx.BasicAuth) -> None:
    (one, svc), _ = replicas
    token = (await mint(one, alice)).json()["token"]
    last = "A" if token[-1] != "A" else "B"
    for forged in (token[:-1] + last, token.replace(".", "..", 1), "p1.x.y", ""):
        with pytest.raises(HttpProblem):
            await verify_token(svc, forged)


async def test_a_token_is_no_api_credential(
    replicas: list[Replica], alice: httpx.BasicAuth
) -> None:
    """The token opens push streams only: as a bearer token or a password the API refuses it."""
    (one, _), _ = replicas
    token = (await mint(one, alice)).json()["token"]
    async with httpx.AsyncClient(base_url=one, timeout=30) as http:
        for headers in (
            {"Authorization": f"Bearer {token}"},
            {"Authorization": "Basic " + base64.b64encode(f"alice:{token}".encode()).decode()},
        ):
            assert (await http.get("/jmap/session", headers=headers)).status_code == 401
        assert (await http.get(f"/jmap/session?access_token={token}")).status_code == 401


async def test_a_token_stream_hears_upstream_changes(
    dovecot: Dovecot, redis_url: str, jmap_user: tuple[str, str]
) -> None:
    """A browser's WebSocket opened with only a token: the mint lent the credentials to the
    watcher, so an APPEND by another IMAP client reaches it."""
    user, password = jmap_user
    settings = gateway_settings(dovecot.url, redis_url)
    async with running_gateway(settings) as base_url:
        minted = (await mint(base_url, httpx.BasicAuth(user, password))).json()
        url = base_url.replace("http://", "ws://") + f"/jmap/ws?access_token={minted['token']}"
        async with connect(url, subprotocols=["jmap"]) as socket:  # type: ignore[list-item]
            await socket.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
            await asyncio.to_thread(append_by_imap, dovecot, user)
            async with asyncio.timeout(10):
                while True:
                    message = json.loads(await socket.recv())
                    if "Email" in message.get("changed", {}).get(minted["accountId"], {}):
                        break


@pytest.fixture
def jmap_user(dovecot: Dovecot) -> tuple[str, str]:
    user = dovecot.fresh_user()
    return user, dovecot.users[user]


def append_by_imap(dovecot: Dovecot, user: str) -> None:
    imap = dovecot.client(user)
    try:
        imap.append("INBOX", None, None, b"Subject: pushed\r\n\r\nhello\r\n")
    finally:
        imap.logout()
