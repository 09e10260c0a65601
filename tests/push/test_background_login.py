"""A master user's login as a user (issue 17 item 4) against a real Dovecot with a master
passdb: SASL PLAIN with the user as authorization identity, and Dovecot's separator form; the
identity it reaches is the user's own (their INBOX X-GUID, as their own login sees it); its
settings, and where the master password must never show."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.auth import Principal, account_id_for
from gateway.cache.store import Store, fixed_secret
from gateway.cache.watches import WatchStore
from gateway.config import ConfigError, load_settings
from gateway.credentials import ActingFor, Credentials
from gateway.imap.connection import ImapConnection
from gateway.imap.errors import AuthenticationFailed
from gateway.imap.pool import ImapPool, Login
from gateway.push.background import BackgroundLogins
from gateway.upstream import fallback_identity, identifies_by_mailbox, imap_endpoint, imap_pool
from gateway.usernames import UsernameFormat
from tests.conftest import CYRUS_PROXY, MASTER_SEPARATOR, MASTER_USER, master_settings
from tests.cyrus import Cyrus
from tests.push.test_background import own_identity, write_subscribed
from tests.push.watching import sent
from tests.servers import Dovecot


@pytest.fixture
async def pool(master_dovecot: Dovecot, redis_url: str) -> AsyncIterator[ImapPool]:
    pool = imap_pool(master_settings(master_dovecot, redis_url))
    try:
        yield pool
    finally:
        await pool.close()


def as_master(user: str, separator: str = "", password: str = MASTER_USER[1]) -> Credentials:
    return Credentials(MASTER_USER[0], password, acting_for=ActingFor(user, separator))


@pytest.mark.parametrize("separator", ["", MASTER_SEPARATOR])
async def test_the_master_login_reaches_the_users_own_mailbox(
    master_dovecot: Dovecot, pool: ImapPool, separator: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "gateway.imap.connection")
    user = master_dovecot.fresh_user()
    own = await asyncio.to_thread(own_identity, master_dovecot, user)
    login = await pool.identify(as_master(user, separator))
    assert login.identity == own
    # PLAIN either way (Dovecot offers it); the password only ever starred in the log.
    assert [line for line in sent(caplog) if line.startswith("AUTHENTICATE")] == [
        "AUTHENTICATE PLAIN ***"
    ]
    assert MASTER_USER[1] not in caplog.text
    # Then a watcher's connection as the same login, its identity checked again.
    async with pool.dedicated(login) as conn:
        assert conn.usable
    assert pool.stats().watch == 0


async def test_a_cyrus_proxy_server_reaches_the_users_own_mailbox(
    proxy_cyrus: Cyrus, redis_url: str
) -> None:
    pool = imap_pool(master_settings(proxy_cyrus, redis_url, master=CYRUS_PROXY))
    try:
        user = proxy_cyrus.fresh_user()
        own = await asyncio.to_thread(own_identity, proxy_cyrus, user)
        proxy, password = CYRUS_PROXY
        login = await pool.identify(Credentials(proxy, password, acting_for=ActingFor(user)))
        assert login.identity == own
        # Another name: Cyrus lets the proxy in (autocreating a mailbox); its identity is
        # that mailbox's, never the user's, so it maps to another account (refused there).
        other = await pool.identify(Credentials(proxy, password, acting_for=ActingFor("nobody")))
        assert other.identity.startswith("mailboxid:")
        assert other.identity != own
    finally:
        await pool.close()


async def test_a_wrong_master_password_is_refused(master_dovecot: Dovecot, pool: ImapPool) -> None:
    user = master_dovecot.fresh_user()
    with pytest.raises(AuthenticationFailed) as caught:
        await pool.identify(as_master(user, password="not-the-master-pw"))
    assert caught.value.code == "AUTHENTICATIONFAILED"
    assert "not-the-master-pw" not in str(caught.value)


async def test_a_user_that_does_not_exist_is_not_authorized(pool: ImapPool) -> None:
    """Dovecot tells this apart from a wrong master password (background.py relies on it:
    one account refused, not every background login paused)."""
    with pytest.raises(AuthenticationFailed) as caught:
        await pool.identify(as_master("nobody-here"))
    assert caught.value.code == "AUTHORIZATIONFAILED"


async def test_a_user_name_holding_the_separator_is_refused(
    master_dovecot: Dovecot, pool: ImapPool
) -> None:
    """``a*b`` with separator ``*`` would log in as someone else: never sent."""
    user = master_dovecot.fresh_user()
    with pytest.raises(AuthenticationFailed, match="separator"):
        await pool.identify(as_master(f"{user}*{MASTER_USER[0]}", MASTER_SEPARATOR))


def test_the_fallback_identity_is_the_users_not_the_masters() -> None:
    """Upstreams that keep no INBOX id: the identity is the user's name, never the master's."""
    identity = fallback_identity(UsernameFormat("%Lu"), as_master("Alice"))
    assert identity == "user:alice"


def test_reprs_hide_the_master_password(master_dovecot: Dovecot, redis_url: str) -> None:
    settings = master_settings(master_dovecot, redis_url)
    assert MASTER_USER[1] not in repr(settings)
    assert MASTER_USER[1] not in repr(as_master("alice"))


@pytest.mark.parametrize(
    ("environment", "problem"),
    [
        ({"GATEWAY_IMAP_MASTER_USER": "gwmaster"}, "go together"),
        ({"GATEWAY_IMAP_MASTER_PASSWORD": "pw-9f3a"}, "go together"),
        ({"GATEWAY_IMAP_MASTER_LOGIN": "proxy"}, "GATEWAY_IMAP_MASTER_LOGIN"),
        ({"GATEWAY_IMAP_MASTER_LOGIN": "separator:"}, "GATEWAY_IMAP_MASTER_LOGIN"),
        ({"GATEWAY_IMAP_MASTER_LOGIN": "separator:**"}, "GATEWAY_IMAP_MASTER_LOGIN"),
        ({"GATEWAY_IMAP_MASTER_LOGIN": 'separator:"'}, "GATEWAY_IMAP_MASTER_LOGIN"),
    ],
)
def test_master_settings_are_checked(
    environment: dict[str, str], problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    required: dict[str, Any] = {
        "GATEWAY_IMAP_URL": "imap://127.0.0.1:1",
        "GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0",
        "GATEWAY_HOST": "127.0.0.1",
    }
    for name, value in {**required, **environment}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=problem) as caught:
        load_settings()
    assert "pw-9f3a" not in str(caught.value)


def test_master_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "GATEWAY_IMAP_URL": "imap://127.0.0.1:1",
        "GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_IMAP_MASTER_USER": "gwmaster",
        "GATEWAY_IMAP_MASTER_PASSWORD": "secret-master",
        "GATEWAY_IMAP_MASTER_LOGIN": "separator:*",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.imap_master_user == "gwmaster"
    assert settings.imap_master_password is not None
    assert settings.imap_master_password.get_secret_value() == "secret-master"
    assert "secret-master" not in repr(settings)


def test_a_background_principal_is_named_after_the_user_never_the_master() -> None:
    # What a Session, a sender address or a stored login is built from: the master's name
    # there would show or use the operator's account instead of the user's.
    credentials = Credentials("gwmaster", "master-secret", acting_for=ActingFor("alice"))
    principal = Principal(Login("alice", credentials), "a1")
    assert principal.username == "alice"
    assert Principal(Login("bob", Credentials("bob", "pw")), "a2").username == "bob"


def test_only_an_inbox_id_tells_users_apart() -> None:
    """Review M5: the fallback identity is made from the name asked for, so it cannot show
    that a master login reached that user's mailbox; the INBOX ids can."""
    assert identifies_by_mailbox("x-guid:0b3f0e2c9a1d4b5e6f708192a3b4c5d6")
    assert identifies_by_mailbox("mailboxid:M3c5a9e1f")
    assert not identifies_by_mailbox(fallback_identity(UsernameFormat("%Lu"), as_master("Bob")))


async def test_an_upstream_without_inbox_ids_is_not_watched_in_the_background(
    master_dovecot: Dovecot, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The master login works, but the upstream (here: Dovecot with the gateway's connector
    told to use the name, as it does when STATUS refuses X-GUID/MAILBOXID) gives no INBOX
    id: no background principal for anyone, said once, and no login tried after that."""
    caplog.set_level(logging.DEBUG)
    settings = master_settings(master_dovecot, redis_url)
    endpoint = imap_endpoint(settings)
    names = UsernameFormat(settings.username_format)

    async def nameless(credentials: Credentials) -> tuple[ImapConnection, str]:
        conn = await ImapConnection.open(endpoint)
        await conn.login(
            credentials.username, credentials.secret, acting_for=credentials.acting_for
        )
        return conn, fallback_identity(names, credentials)

    pool = ImapPool(nameless, max_per_user=2, max_total=8, idle_timeout=30.0, wait_timeout=5.0)
    store = Store.from_url(redis_url)
    secret = b"s" * 32
    try:
        watches = WatchStore(store.client)
        logins = BackgroundLogins(settings, pool, fixed_secret(secret), watches)
        users = [master_dovecot.fresh_user() for _ in range(2)]
        accounts = [account_id_for(secret, fallback_identity(names, as_master(u))) for u in users]
        for account, user in zip(accounts, users, strict=True):
            await write_subscribed(store.client, account, user)
        assert await logins.principal(accounts[0]) is None
        tried = [line for line in sent(caplog) if line.startswith("AUTHENTICATE")]
        assert len(tried) == 1
        assert await logins.principal(accounts[1]) is None
        assert not logins.may_try(accounts[1])
        assert [line for line in sent(caplog) if line.startswith("AUTHENTICATE")] == tried
        said = [r for r in caplog.records if "gives no INBOX id" in r.getMessage()]
        assert len(said) == 1 and said[0].levelno == logging.ERROR
    finally:
        await pool.close()
        await store.close()


async def test_a_refusal_the_master_login_of_another_account_passes_refuses_one_account(
    master_dovecot: Dovecot, redis_url: str, pool: ImapPool
) -> None:
    """Review M3: a reconnect refused with AUTHENTICATIONFAILED (what some upstreams answer
    for a user gone) pauses no other account while another account's master login, which
    worked, is still accepted; refused alike, it is the master user that is refused."""
    settings = master_settings(master_dovecot, redis_url)
    store = Store.from_url(redis_url)
    secret = b"k" * 32
    try:
        logins = BackgroundLogins(settings, pool, fixed_secret(secret), WatchStore(store.client))
        kept, gone = master_dovecot.fresh_user(), master_dovecot.fresh_user()
        accounts = {}
        for user in (kept, gone):
            identity = await asyncio.to_thread(own_identity, master_dovecot, user)
            accounts[user] = account_id_for(secret, identity)
            await write_subscribed(store.client, accounts[user], user)
        assert await logins.principal(accounts[kept]) is not None
        working = await logins.principal(accounts[gone])
        assert working is not None
        # The upstream now refuses the login ``gone``'s watcher reconnects with.
        refused_login = Login(
            working.login.identity, as_master(gone, password="no-longer-accepted")
        )
        await logins.refused(accounts[gone], Principal(refused_login, accounts[gone]))
        assert not logins.paused()
        assert not logins.may_try(accounts[gone])
        assert logins.may_try(accounts[kept])
        assert await logins.principal(accounts[kept]) is not None
    finally:
        await store.close()
