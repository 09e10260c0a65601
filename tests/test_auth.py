"""Authentication against the upstream: 401s, 503 while it is down, and no leaked passwords."""

from __future__ import annotations

import base64
import logging

import httpx
import pytest
import redis

from gateway.app import create_app
from gateway.authorization import MAX_PASSWORD_OCTETS, MAX_USERNAME_OCTETS
from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot

PASSWORD = "alice-secret-pw"


async def test_no_credentials(http: httpx.AsyncClient) -> None:
    response = await http.get("/jmap/session")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"alice:").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
    ],
)
async def test_malformed_credentials(http: httpx.AsyncClient, header: str) -> None:
    response = await http.get("/jmap/session", headers={"authorization": header})
    assert response.status_code == 401
    assert "www-authenticate" in response.headers


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", "p" * 9_000),
        ("x" * 9_000, "y"),
        ("alice", "ü" * 2049),  # 4,098 octets in UTF-8
        ("alice", "p" * 40_000),
    ],
)
async def test_overlong_credentials_are_refused(
    http: httpx.AsyncClient, username: str, password: str
) -> None:
    """Longer than any upstream takes (Dovecot resets a login line of 8 KiB): 401 at once,
    never an upstream error."""
    response = await http.get("/jmap/session", auth=httpx.BasicAuth(username, password))
    assert response.status_code == 401
    assert "too long" in response.json()["detail"]


async def test_credentials_of_the_longest_length_reach_the_upstream(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get(
        "/jmap/session",
        auth=httpx.BasicAuth("a" * MAX_USERNAME_OCTETS, "b" * MAX_PASSWORD_OCTETS),
    )
    assert response.status_code == 401
    assert "refused" in response.json()["detail"]


async def test_wrong_password(http: httpx.AsyncClient) -> None:
    response = await http.get("/jmap/session", auth=httpx.BasicAuth("alice", "wrong"))
    assert response.status_code == 401
    response = await http.post(
        "/jmap/api/",
        auth=httpx.BasicAuth("nobody", "x"),
        content=b"{}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 401


async def test_utf8_password_reaches_the_upstream(dovecot: Dovecot, redis_url: str) -> None:
    """RFC 7617 credentials are UTF-8; AUTHENTICATE PLAIN carries them unchanged."""
    settings = gateway_settings(dovecot.url, redis_url)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/jmap/session", auth=httpx.BasicAuth("carol", "pässwörd-✓"))
        assert response.status_code == 200
        assert response.json()["username"] == "carol"


async def test_unreachable_upstream_then_recovery(private_dovecot: Dovecot, redis_url: str) -> None:
    settings = gateway_settings(
        private_dovecot.url, redis_url, auth_cache_seconds=0, imap_connect_timeout=2
    )
    auth = httpx.BasicAuth("alice", private_dovecot.users["alice"])
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/jmap/session", auth=auth)).status_code == 200
        private_dovecot.stop()
        response = await http.get("/jmap/session", auth=auth)
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"]
        assert response.json()["status"] == 503
        private_dovecot.start()
        assert (await http.get("/jmap/session", auth=auth)).status_code == 200


async def test_passwords_never_reach_logs_or_redis(
    dovecot: Dovecot, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = gateway_settings(dovecot.url, redis_url)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        await http.get("/jmap/session", auth=httpx.BasicAuth("alice", PASSWORD))
        await http.get("/jmap/session", auth=httpx.BasicAuth("alice", "wrong-guess-pw"))
        body = b'{"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Core/echo", {}, "c"]]}'
        await http.post(
            "/jmap/api/",
            content=body,
            auth=httpx.BasicAuth("alice", PASSWORD),
            headers={"content-type": "application/json"},
        )
    encoded = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, "wrong-guess-pw", encoded):
        assert secret not in caplog.text
    client = redis.Redis.from_url(redis_url)
    for key in client.keys("*"):
        if client.type(key) == b"string":
            value = client.get(key) or b""
            assert PASSWORD.encode() not in value
        assert PASSWORD.encode() not in key
    client.close()


async def test_access_log_line(
    http: httpx.AsyncClient, alice: httpx.BasicAuth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    body = b'{"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Core/echo", {}, "c"]]}'
    await http.post(
        "/jmap/api/", content=body, auth=alice, headers={"content-type": "application/json"}
    )
    (record,) = [r for r in caplog.records if r.name == "gateway.access"]
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["status"] == 200
    assert fields["route"] == "/jmap/api/"
    assert fields["calls"] == ["Core/echo"]
    assert fields["account"].startswith("a") and "alice" not in fields["account"]
    assert fields["duration_ms"] >= 0


async def test_a_refused_password_is_remembered_briefly(dovecot: Dovecot, redis_url: str) -> None:
    settings = gateway_settings(dovecot.url, redis_url)
    app = create_app(settings)
    async with running_gateway(settings, app) as url, httpx.AsyncClient(base_url=url) as http:
        wrong = httpx.BasicAuth("alice", "guess-one")
        assert (await http.get("/jmap/session", auth=wrong)).status_code == 401
        opened = app.state.services.pool.stats().opened
        assert (await http.get("/jmap/session", auth=wrong)).status_code == 401
        assert app.state.services.pool.stats().opened == opened
        right = httpx.BasicAuth("alice", dovecot.users["alice"])
        assert (await http.get("/jmap/session", auth=right)).status_code == 200
