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

from gateway.auth import Principal
from gateway.config import ConfigError, load_settings
from gateway.credentials import ActingFor, Credentials
from gateway.imap.errors import AuthenticationFailed
from gateway.imap.pool import ImapPool, Login
from gateway.upstream import fallback_identity, imap_pool
from gateway.usernames import UsernameFormat
from tests.conftest import CYRUS_PROXY, MASTER_SEPARATOR, MASTER_USER, master_settings
from tests.cyrus import Cyrus
from tests.push.test_background import own_identity
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
