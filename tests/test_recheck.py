"""Authenticator.recheck, which long push streams call every GATEWAY_PUSH_RECHECK_SECONDS: free
while the last check is fresh, an upstream login once it expired, refused once the upstream
refuses (the password changed)."""

from __future__ import annotations

import asyncio
import base64
import imaplib
from collections.abc import AsyncIterator

import pytest

from gateway.app import create_app
from gateway.auth import Unauthenticated
from gateway.credentials import Origin
from gateway.services import Services
from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def change_password(dovecot: Dovecot, user: str, password: str) -> None:
    """What an operator's password change does: Dovecot rereads its passwd file (at most once
    a second); returns once a plain IMAP login sees the new password."""
    dovecot.users[user] = password
    passwd = "".join(f"{name}:{{PLAIN}}{pw}::::::\n" for name, pw in dovecot.users.items())
    (dovecot.root / "passwd").write_text(passwd)
    for _ in range(100):
        if await asyncio.to_thread(logs_in, dovecot, user, password):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("Dovecot did not take the new password")


def logs_in(dovecot: Dovecot, user: str, password: str) -> bool:
    conn = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
    try:
        conn.login(user, password)
    except imaplib.IMAP4.error:
        return False
    finally:
        conn.shutdown()
    return True


async def services(dovecot: Dovecot, redis_url: str, cache: float) -> AsyncIterator[Services]:
    settings = gateway_settings(dovecot.url, redis_url, auth_cache_seconds=cache)
    app = create_app(settings)
    async with running_gateway(settings, app):
        yield app.state.services


@pytest.fixture
async def uncached(private_dovecot: Dovecot, redis_url: str) -> AsyncIterator[Services]:
    async for svc in services(private_dovecot, redis_url, 0):
        yield svc


@pytest.fixture
async def cached(private_dovecot: Dovecot, redis_url: str) -> AsyncIterator[Services]:
    async for svc in services(private_dovecot, redis_url, 3600):
        yield svc


async def test_refused_after_the_password_changed(
    uncached: Services, private_dovecot: Dovecot
) -> None:
    authenticator = uncached.authenticator
    principal = await authenticator.authenticate(
        basic("alice", private_dovecot.users["alice"]), None
    )
    credentials = principal.login.credentials
    origin = Origin("192.0.2.7")
    opened = uncached.pool.stats().opened
    await authenticator.recheck(credentials, origin)
    assert uncached.pool.stats().opened == opened + 1  # nothing cached: one upstream login

    await change_password(private_dovecot, "alice", "a-new-password")
    with pytest.raises(Unauthenticated):
        await authenticator.recheck(credentials, origin)
    # The new password works, the old one stays refused.
    await authenticator.authenticate(basic("alice", "a-new-password"), None)
    with pytest.raises(Unauthenticated):
        await authenticator.recheck(credentials, None)


async def test_free_while_the_cache_is_fresh(cached: Services, private_dovecot: Dovecot) -> None:
    authenticator = cached.authenticator
    principal = await authenticator.authenticate(
        basic("alice", private_dovecot.users["alice"]), None
    )
    opened = cached.pool.stats().opened
    for _ in range(5):
        await authenticator.recheck(principal.login.credentials, None)
    assert cached.pool.stats().opened == opened


async def test_an_upstream_outage_ends_no_stream(
    uncached: Services, private_dovecot: Dovecot
) -> None:
    """Unreachable upstream: recheck cannot tell, so it does not refuse."""
    authenticator = uncached.authenticator
    principal = await authenticator.authenticate(
        basic("alice", private_dovecot.users["alice"]), None
    )
    private_dovecot.stop()
    try:
        await authenticator.recheck(principal.login.credentials, None)
    finally:
        private_dovecot.start()
