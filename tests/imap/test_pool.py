"""The per-user pool against a real Dovecot: reuse, limits, eviction, idle close, health."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import pytest

from gateway.config import Settings
from gateway.credentials import Credentials
from gateway.imap.connection import ImapConnection
from gateway.imap.errors import AuthenticationFailed, UpstreamUnavailable
from gateway.imap.pool import ImapPool, PoolExhausted
from gateway.upstream import imap_pool
from tests.faultproxy import FaultProxy
from tests.imap.upstream import imap_processes, signal_imap
from tests.servers import Dovecot


def pool_for(dovecot: Dovecot, **options: object) -> ImapPool:
    values: dict[str, object] = {"imap_url": dovecot.url, "redis_url": "redis://127.0.0.1"}
    values.update(options)
    return imap_pool(Settings(**values))  # type: ignore[arg-type]


def creds(dovecot: Dovecot, user: str) -> Credentials:
    return Credentials(user, dovecot.users[user])


async def test_connection_is_reused(dovecot: Dovecot) -> None:
    pool = pool_for(dovecot)
    alice = await pool.login(creds(dovecot, "alice"))
    assert "CONDSTORE" in pool.capabilities(alice.identity)
    async with pool.connection(alice) as first:
        pass
    async with pool.connection(alice) as second:
        assert second is first
    assert pool.stats().total == 1
    await pool.close()


async def test_logins_at_the_user_limit_replace_idle_connections(dovecot: Dovecot) -> None:
    pool = pool_for(dovecot, pool_max_per_user=1, pool_wait_timeout=1)
    for _ in range(3):
        await pool.login(creds(dovecot, "alice"))
    assert pool.stats().total == 1 and pool.stats().opened == 3
    await pool.close()


async def test_login_with_wrong_password_keeps_nothing(dovecot: Dovecot) -> None:
    pool = pool_for(dovecot)
    with pytest.raises(AuthenticationFailed):
        await pool.login(Credentials("alice", "wrong"))
    assert pool.stats().total == 0
    await pool.close()


async def test_per_user_limit_makes_the_user_wait(dovecot: Dovecot) -> None:
    pool = pool_for(dovecot, pool_max_per_user=2, pool_wait_timeout=0.3)
    alice = await pool.login(creds(dovecot, "alice"))
    async with contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(pool.connection(alice)) for _ in range(2)]
        assert held[0] is not held[1]
        with pytest.raises(PoolExhausted):
            async with pool.connection(alice):
                pass
    async with pool.connection(alice):
        assert pool.stats().total == 2
    await pool.close()


async def test_waiter_gets_the_released_connection(dovecot: Dovecot) -> None:
    pool = pool_for(dovecot, pool_max_per_user=1, pool_wait_timeout=5)
    alice = await pool.login(creds(dovecot, "alice"))
    release = asyncio.Event()

    async def holder() -> None:
        async with pool.connection(alice):
            await release.wait()

    task = asyncio.create_task(holder())
    await asyncio.sleep(0.1)

    async def waiter() -> bool:
        async with pool.connection(alice) as conn:
            return conn.usable

    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0.1)
    assert not waiting.done()
    release.set()
    assert await waiting
    await task
    await pool.close()


async def test_one_user_cannot_exhaust_the_pool(dovecot: Dovecot) -> None:
    pool = pool_for(dovecot, pool_max_per_user=2, pool_max_total=3, pool_wait_timeout=0.3)
    alice = await pool.login(creds(dovecot, "alice"))
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(2):
            await stack.enter_async_context(pool.connection(alice))
        with pytest.raises(PoolExhausted):
            await stack.enter_async_context(pool.connection(alice))
        bob = await pool.login(creds(dovecot, "bob"))
        async with pool.connection(bob) as conn:
            assert conn.usable
    await pool.close()


async def test_full_pool_evicts_another_users_idle_connection(dovecot: Dovecot) -> None:
    pool = pool_for(dovecot, pool_max_per_user=2, pool_max_total=2)
    alice = await pool.login(creds(dovecot, "alice"))
    async with pool.connection(alice), pool.connection(alice):
        pass
    assert pool.stats().total == 2
    bob = await pool.login(creds(dovecot, "bob"))
    async with pool.connection(bob) as conn:
        assert conn.usable
        assert pool.stats().total == 2
    assert pool.stats().users == 2
    await pool.close()


async def test_idle_connections_are_logged_out(dovecot: Dovecot) -> None:
    pool = pool_for(dovecot)
    await pool.login(creds(dovecot, "bob"))
    assert pool.close_idle(older_than=0) == 1
    assert pool.stats().total == 0
    for _ in range(50):
        if not imap_processes(dovecot, "bob"):
            break
        await asyncio.sleep(0.05)
    assert imap_processes(dovecot, "bob") == []
    await pool.close()


async def test_reaper_closes_after_idle_timeout(dovecot: Dovecot) -> None:
    pool = pool_for(dovecot, pool_idle_timeout=0.2)
    pool.start()
    await pool.login(creds(dovecot, "bob"))
    for _ in range(60):
        if pool.stats().total == 0:
            break
        await asyncio.sleep(0.1)
    assert pool.stats().total == 0
    await pool.close()


async def test_broken_idle_connection_is_replaced(private_dovecot: Dovecot) -> None:
    pool = pool_for(private_dovecot)
    alice = await pool.login(creds(private_dovecot, "alice"))
    async with pool.connection(alice) as first:
        await first.noop()
    signal_imap(private_dovecot, "alice", signal.SIGKILL)
    await asyncio.sleep(0.2)
    async with pool.connection(alice) as second:
        assert second is not first
        await second.noop()
    assert pool.stats().total == 1
    await pool.close()


async def test_close_logs_out_and_refuses_new_work(dovecot: Dovecot) -> None:
    pool = pool_for(dovecot)
    alice = await pool.login(creds(dovecot, "alice"))
    async with pool.connection(alice) as conn:
        pass
    await pool.close()
    assert not conn.usable
    with pytest.raises(Exception, match="shutting down"):
        async with pool.connection(alice):
            pass


async def test_cancelled_health_check_frees_the_slot(private_dovecot: Dovecot) -> None:
    pool = pool_for(private_dovecot, pool_max_per_user=1, pool_wait_timeout=5)
    alice = await pool.login(creds(private_dovecot, "alice"))
    async with pool.connection(alice) as conn:
        conn.last_used -= 3600  # idle long enough to be checked with a NOOP
    signal_imap(private_dovecot, "alice", signal.SIGSTOP)
    try:
        task = asyncio.create_task(pool.connection(alice).__aenter__())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        signal_imap(private_dovecot, "alice", signal.SIGCONT)
    assert pool.stats().total == 0
    async with pool.connection(alice) as fresh:
        await fresh.noop()
    await pool.close()


async def test_close_waits_for_lent_connections_and_logs_them_out(dovecot: Dovecot) -> None:
    async with FaultProxy("127.0.0.1", dovecot.imap_port) as proxy:
        pool = pool_for(dovecot, imap_url=proxy.url)
        alice = await pool.login(creds(dovecot, "alice"))
        lent = pool.connection(alice)
        conn = await lent.__aenter__()
        async with pool.connection(alice):
            pass  # a second connection, idle from here on
        assert pool.stats().total == 2
        closing = asyncio.create_task(pool.close(grace=30))
        await asyncio.sleep(0.2)
        assert not closing.done()  # the lent connection is still at work
        await conn.noop()
        await lent.__aexit__(None, None, None)
        await closing
        logouts = [c for c in proxy.commands() if c.endswith(b" LOGOUT")]
        assert len(logouts) == 2


async def test_close_gives_up_on_a_connection_never_returned(dovecot: Dovecot) -> None:
    pool = pool_for(dovecot)
    lent = pool.connection(await pool.login(creds(dovecot, "alice")))
    await lent.__aenter__()
    await pool.close(grace=0.2)  # returns although the connection is still out
    await lent.__aexit__(None, None, None)
    assert pool.stats().total == 0


async def test_a_login_finishing_after_close_is_logged_out(dovecot: Dovecot) -> None:
    async with FaultProxy("127.0.0.1", dovecot.imap_port) as proxy:
        pool = pool_for(dovecot, imap_url=proxy.url)
        alice = creds(dovecot, "alice")
        connecting = asyncio.Event()
        connect = pool._connector

        async def slow_connect(credentials: Credentials) -> tuple[ImapConnection, str]:
            connecting.set()
            await asyncio.sleep(0.5)  # close() runs meanwhile
            return await connect(credentials)

        pool._connector = slow_connect
        login = asyncio.create_task(pool.login(alice))
        await connecting.wait()
        await pool.close(grace=0.1)
        with pytest.raises(UpstreamUnavailable, match="shutting down"):
            await login
        assert pool.stats().total == 0
        verbs = [c.split(b" ")[1] for c in proxy.commands()]
    assert verbs.count(b"LOGOUT") == verbs.count(b"LOGIN") + verbs.count(b"AUTHENTICATE") == 1
