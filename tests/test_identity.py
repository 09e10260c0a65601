"""One account per upstream user: every spelling the upstream lets in as one user is one account,
one index and one set of limits (Dovecot and Cyrus)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import redis

from gateway.app import create_app
from gateway.config import Settings
from gateway.credentials import Credentials
from gateway.imap.pool import IdentityChanged, Login
from gateway.upstream import fallback_identity, imap_pool
from gateway.usernames import UsernameFormat
from tests.conftest import gateway_settings, running_gateway
from tests.cyrus import Cyrus
from tests.servers import Dovecot

MAIL = "urn:ietf:params:jmap:mail"
CORE = "urn:ietf:params:jmap:core"
# The test Dovecot: auth_username_format %Lu, passdb username_format=%n.
DOVECOT_SPELLINGS = ("alice", "ALICE", "Alice", "alice@anything", "aLiCe@example.org")


async def session(http: httpx.AsyncClient, user: str, password: str) -> dict[str, object]:
    response = await http.get("/jmap/session", auth=httpx.BasicAuth(user, password))
    assert response.status_code == 200, (user, response.text)
    return response.json()  # type: ignore[no-any-return]


def account_tags(redis_url: str) -> set[str]:
    """The accounts Redis holds any key of (``jg:{<account>}:...``)."""
    client = redis.Redis.from_url(redis_url)
    try:
        return {key.split(b"}")[0][4:].decode() for key in client.keys("jg:{*")}
    finally:
        client.close()


async def test_every_dovecot_spelling_is_one_account(dovecot: Dovecot, redis_url: str) -> None:
    password = dovecot.users["alice"]
    async with (
        running_gateway(gateway_settings(dovecot.url, redis_url)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        sessions = {user: await session(http, user, password) for user in DOVECOT_SPELLINGS}
        bob = await session(http, "bob", dovecot.users["bob"])
        for user in DOVECOT_SPELLINGS:
            body = {"using": [CORE, MAIL], "methodCalls": [["Mailbox/get", {"ids": []}, "c"]]}
            body["methodCalls"][0][1]["accountId"] = sessions[user]["primaryAccounts"][MAIL]
            response = await http.post(
                "/jmap/api/",
                content=json.dumps(body),
                auth=httpx.BasicAuth(user, password),
                headers={"content-type": "application/json"},
            )
            assert response.json()["methodResponses"][0][0] == "Mailbox/get"
    accounts = {str(s["primaryAccounts"][MAIL]) for s in sessions.values()}  # type: ignore[index]
    assert len(accounts) == 1
    assert bob["primaryAccounts"][MAIL] not in accounts  # type: ignore[index]
    # The Session names the user as they logged in; the account is the same.
    assert {s["username"] for s in sessions.values()} == set(DOVECOT_SPELLINGS)
    # One index in Redis, not one per spelling (each was 4.5 MB on a real mailbox).
    assert account_tags(redis_url) == accounts


async def test_spellings_share_one_pool_and_its_limit(dovecot: Dovecot, redis_url: str) -> None:
    """A user logging in under many spellings at once holds at most pool_max_per_user
    connections: the pool is keyed by the upstream's user, not the login (one user took all
    100 connections this way)."""
    settings = gateway_settings(
        dovecot.url, redis_url, auth_cache_seconds=0, pool_max_per_user=2, pool_max_total=20
    )
    app = create_app(settings)
    password = dovecot.users["alice"]
    spellings = [f"{'ALICE' if i % 2 else 'alice'}@domain{i}.example" for i in range(12)]
    async with (
        running_gateway(settings, app) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        replies = await asyncio.gather(
            *(http.get("/jmap/session", auth=httpx.BasicAuth(u, password)) for u in spellings)
        )
        pool = app.state.services.pool
        stats = pool.stats()
    assert [r.status_code for r in replies] == [200] * len(spellings)
    assert stats.opened == len(spellings)  # every spelling was checked upstream ...
    assert stats.users == 1 and stats.total <= 2  # ... and kept as one user's connections


async def test_cyrus_spellings_are_one_account(cyrus: Cyrus, redis_url: str) -> None:
    """Cyrus lower-cases user names; its INBOX MAILBOXID (RFC 8474) names the user."""
    password = cyrus.users["alice"]
    async with (
        running_gateway(gateway_settings(cyrus.url, redis_url)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        sessions = [await session(http, user, password) for user in ("alice", "ALICE", "Alice")]
        bob = await session(http, "bob", cyrus.users["bob"])
    accounts = {s["primaryAccounts"][MAIL] for s in sessions}  # type: ignore[index]
    assert len(accounts) == 1
    assert bob["primaryAccounts"][MAIL] not in accounts  # type: ignore[index]


async def test_identity_is_the_inbox_id(dovecot: Dovecot, cyrus: Cyrus) -> None:
    """What the upstream says of the INBOX, read with a plain imaplib session."""
    for server, item in ((dovecot, "X-GUID"), (cyrus, "MAILBOXID")):
        settings = Settings(imap_url=server.url, redis_url="redis://127.0.0.1")
        pool = imap_pool(settings)
        login = await pool.login(Credentials("ALICE", server.users["alice"]))
        await pool.close()
        witness = server.client("alice")
        try:
            _, [line] = witness.status("INBOX", f"({item})")
        finally:
            witness.logout()
        assert isinstance(line, bytes)
        value = line.decode().split(item, 1)[1].strip(" ()")
        assert login.identity == f"{item.lower()}:{value}"


async def test_a_connection_of_another_user_is_never_handed_out(dovecot: Dovecot) -> None:
    """When the user a login verified and the user a new connection logs in as differ (the
    INBOX was recreated), the connection is logged out and the request gets 503."""
    pool = imap_pool(Settings(imap_url=dovecot.url, redis_url="redis://127.0.0.1"))
    stale = Login(
        "x-guid:00000000000000000000000000000000", Credentials("alice", "alice-secret-pw")
    )
    with pytest.raises(IdentityChanged):
        async with pool.connection(stale):
            pass
    assert pool.stats().total == 0 and pool.stats().opened == 1
    await pool.close()


def test_fallback_identity_follows_the_username_format() -> None:
    """Where the upstream keeps no INBOX id, the operator's format names the user."""
    lower_local = UsernameFormat("%Ln")
    same = {fallback_identity(lower_local, Credentials(u, "pw")) for u in DOVECOT_SPELLINGS}
    assert same == {"user:alice"}
    as_typed = UsernameFormat("%u")
    assert fallback_identity(as_typed, Credentials("Alice", "pw")) != fallback_identity(
        as_typed, Credentials("alice", "pw")
    )
    assert UsernameFormat("%Ln@example.com").apply("Bob@Other.org") == "bob@example.com"
    assert UsernameFormat("100%% %Ln at %Ld").apply("X@EXAMPLE.org") == "100% x at example.org"
    for bad in ("%d", "static", "%x", "%"):
        with pytest.raises(ValueError):
            UsernameFormat(bad)
