"""Watch managers of several replicas (Services on one Redis) in front of a real Dovecot: one
watcher per account cluster-wide, takeover when its holder dies, logout when the last listener
anywhere leaves, credentials refused upstream closing their listeners."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import secrets
import subprocess
from collections.abc import AsyncIterator

import pytest

from gateway import services
from gateway.auth import Principal
from gateway.cache.watches import WatchStore
from gateway.credentials import Credentials
from gateway.imap.pool import Login
from gateway.metrics import Metrics
from gateway.push import CloseReason
from gateway.push.hub import Closed, Subscription
from gateway.push.watch import PROBES_PER_TICK, STARTS_PER_ROUND
from tests.conftest import gateway_settings
from tests.push.watching import (
    TIMEOUT,
    catch_ups,
    dovecot_sessions,
    eventually,
    imap,
    lease_holder,
    message,
    principal,
)
from tests.servers import Dovecot
from tests.upstream_log import upstream_commands

# The shortest lease the settings allow: renewals and candidacy every second.
LEASE = 3.0


@contextlib.asynccontextmanager
async def replicas(
    count: int, imap_url: str, redis_url: str, lease: float = LEASE
) -> AsyncIterator[list[services.Services]]:
    started: list[services.Services] = []
    try:
        for _ in range(count):
            settings = gateway_settings(imap_url, redis_url, push_watch_lease_seconds=lease)
            started.append(await services.start(settings, Metrics()))
        yield started
    finally:
        for svc in started:
            await services.stop(svc)


def crash(svc: services.Services) -> None:
    """The replica dies as far as watching goes: nothing renewed, released or logged out
    (its manager's loop and watchers are cancelled, as SIGKILL would end them)."""
    manager = svc.watches
    assert manager._loop_task is not None
    manager._stopping = True  # redis-py may swallow the cancellation of a command
    manager._loop_task.cancel()
    for watch in manager._watches.values():
        assert watch.task is not None
        watch.task.cancel()


def watchers(*replicas: services.Services) -> list[services.Services]:
    return [r for r in replicas if r.watches.watching()]


async def hear(sub: Subscription, data_type: str) -> None:
    """Wait until ``sub`` is told of a new state of ``data_type``."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            changed = await sub.next(TIMEOUT)
            if changed and data_type in changed[sub.account_id]:
                return


def append(subject: str) -> object:
    return lambda c: c.append("INBOX", "", None, message(subject))


async def test_one_watcher_for_an_account_listened_to_on_two_replicas(
    dovecot: Dovecot, redis_url: str
) -> None:
    user = dovecot.fresh_user()
    async with replicas(2, dovecot.url, redis_url) as (r1, r2):
        p1, p2 = await principal(r1, dovecot, user), await principal(r2, dovecot, user)
        account = p1.account_id
        sessions = dovecot_sessions(dovecot, user)
        async with r1.push.listen(account, p1, None) as s1, r2.push.listen(account, p2, None) as s2:
            await eventually(lambda: len(watchers(r1, r2)) == 1)
            [holder] = watchers(r1, r2)
            await eventually(lambda: catch_ups(holder) >= 1)
            # Several rounds later, still one, with one upstream connection more.
            await asyncio.sleep(3 * LEASE / 3)
            assert len(watchers(r1, r2)) == 1
            assert dovecot_sessions(dovecot, user) == sessions + 1
            await imap(dovecot, user, append("hello"))
            await asyncio.gather(hear(s1, "Email"), hear(s2, "Email"))
        takeovers = [
            r.metrics.registry.get_sample_value("jmap_gateway_push_watch_takeovers_total")
            for r in (r1, r2)
        ]
        assert sorted(takeovers) == [0.0, 1.0]


async def test_another_replica_takes_over_when_the_holder_dies(
    dovecot: Dovecot, redis_url: str
) -> None:
    user = dovecot.fresh_user()
    async with replicas(2, dovecot.url, redis_url) as (r1, r2):
        p1, p2 = await principal(r1, dovecot, user), await principal(r2, dovecot, user)
        account = p1.account_id
        async with r1.push.listen(account, p1, None), r2.push.listen(account, p2, None) as s2:
            await eventually(lambda: len(watchers(r1, r2)) == 1)
            [holder] = watchers(r1, r2)
            survivor = r2 if holder is r1 else r1
            sub = s2 if survivor is r2 else None
            crash(holder)
            # The lease expires (LEASE) and the survivor takes it at its next round.
            await eventually(lambda: account in survivor.watches.watching(), LEASE * 4)
            assert await lease_holder(survivor, account) == survivor.replica_id
            await eventually(lambda: catch_ups(survivor) >= 1)
            async with survivor.push.listen(account, None, None) as late:
                await imap(dovecot, user, append("after the takeover"))
                await hear(late, "Email")
                if sub is not None:
                    await hear(sub, "Email")


async def test_a_replica_stopping_hands_its_watch_over_at_once(
    dovecot: Dovecot, redis_url: str
) -> None:
    """A replica shutting down releases its leases and says so on the bus: another replica
    with listeners and credentials takes over without waiting for the lease (a long one
    here, longer than the test waits) to expire."""
    user = dovecot.fresh_user()
    async with replicas(1, dovecot.url, redis_url, lease=120) as (r2,):
        p2 = await principal(r2, dovecot, user)
        account = p2.account_id
        async with replicas(1, dovecot.url, redis_url, lease=120) as (r1,):
            p1 = await principal(r1, dovecot, user)
            async with r1.push.listen(account, p1, None):
                await eventually(lambda: account in r1.watches.watching())
                async with r2.push.listen(account, p2, None) as sub:
                    assert not r2.watches.watching()
                    await r1.watches.stop()  # what services.stop does first on SIGTERM
                    await eventually(lambda: account in r2.watches.watching())
                    await eventually(lambda: catch_ups(r2) >= 1)
                    await imap(dovecot, user, append("after the hand-over"))
                    await hear(sub, "Email")


async def test_the_watcher_logs_out_when_the_last_listener_anywhere_leaves(
    dovecot: Dovecot, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    user = dovecot.fresh_user()
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    async with replicas(2, dovecot.url, redis_url) as (r1, r2):
        p1 = await principal(r1, dovecot, user)
        account = p1.account_id
        sessions = dovecot_sessions(dovecot, user)
        store = WatchStore(r1.store.client)
        other = r2.push.listen(account, None, None)  # a token listener on the other replica
        await other.__aenter__()
        try:
            async with r1.push.listen(account, p1, None):
                await eventually(lambda: account in r1.watches.watching())
                await eventually(lambda: catch_ups(r1) >= 1)
            # r1's listener left, r2's still listens: r1 keeps watching for it.
            await asyncio.sleep(LEASE)
            assert account in r1.watches.watching()
            upstream_commands(caplog)
        finally:
            await other.__aexit__(None, None, None)
        await eventually(lambda: not r1.watches.watching(), LEASE * 2)
        assert "LOGOUT" in upstream_commands(caplog)
        await eventually(lambda: dovecot_sessions(dovecot, user) == sessions)
        assert await lease_holder(r1, account) is None
        assert await store.demanded([account]) == set()


async def test_a_replica_with_credentials_watches_for_token_listeners_elsewhere(
    dovecot: Dovecot, redis_url: str
) -> None:
    """contracts15 Q1: r1 minted a token (its keeper holds the credentials), the browser's
    stream landed on r2, which has none: r1 watches, r2's listener hears upstream changes."""
    user = dovecot.fresh_user()
    async with replicas(2, dovecot.url, redis_url) as (r1, r2):
        p1 = await principal(r1, dovecot, user)
        account = p1.account_id
        r1.keeper.remember(account, p1)
        async with r2.push.listen(account, None, None) as sub:
            await eventually(lambda: account in r1.watches.watching(), LEASE * 2)
            assert not r2.watches.watching()
            await eventually(lambda: catch_ups(r1) >= 1)
            await imap(dovecot, user, append("for the browser"))
            await hear(sub, "Email")


async def set_password(dovecot: Dovecot, user: str, password: str) -> None:
    """Rewrite the passwd file and wait until Dovecot logs the user in with ``password``
    (its passwd-file passdb looks at the file at most once a second)."""
    dovecot.users[user] = password
    passwd = "".join(f"{u}:{{PLAIN}}{pw}::::::\n" for u, pw in dovecot.users.items())
    (dovecot.root / "passwd").write_text(passwd)

    def logs_in() -> bool:
        client = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
        try:
            client.login(user, password)
        except imaplib.IMAP4.error:
            client.shutdown()
            return False
        client.logout()
        return True

    async def taken() -> bool:
        return await asyncio.to_thread(logs_in)

    await eventually(taken)


async def test_credentials_refused_upstream_close_their_listeners(
    dovecot: Dovecot, redis_url: str
) -> None:
    user = "w-" + secrets.token_hex(6)
    await set_password(dovecot, user, "before-" + secrets.token_hex(4))
    async with replicas(1, dovecot.url, redis_url) as (r1,):
        who = await principal(r1, dovecot, user)
        account = who.account_id
        async with r1.push.listen(account, who, None) as sub:
            await eventually(lambda: account in r1.watches.watching())
            await eventually(lambda: catch_ups(r1) >= 1)
            await set_password(dovecot, user, "after-" + secrets.token_hex(4))
            # The watcher's session is ended upstream; its next login is refused.
            subprocess.run(
                ["doveadm", "-c", str(dovecot.config), "kick", user],
                check=True,
                capture_output=True,
            )
            with pytest.raises(Closed) as closed:
                async with asyncio.timeout(TIMEOUT * 2):
                    while True:
                        await sub.next(TIMEOUT)
            assert closed.value.reason is CloseReason.UNAUTHORIZED
            assert r1.keeper.candidates(account) == []
            await eventually(lambda: not r1.watches.watching())
            assert await lease_holder(r1, account) is None


async def test_the_loop_survives_an_unexpected_error(
    dovecot: Dovecot,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A round failing with an exception that is no Redis trouble (a bug) is logged with its
    type, and the rounds go on: a listener arriving afterwards gets its watcher."""
    user = dovecot.fresh_user()
    async with replicas(1, dovecot.url, redis_url) as (r1,):
        who = await principal(r1, dovecot, user)
        account = who.account_id
        store = r1.watches._store
        heartbeat = store.heartbeat
        failures = 0

        async def failing_once(*args: object, **kwargs: object) -> set[str]:
            nonlocal failures
            if failures == 0:
                failures += 1
                raise RuntimeError("a bug")
            return await heartbeat(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "heartbeat", failing_once)
        async with r1.push.listen(account, who, None):
            await eventually(lambda: failures == 1)
            await eventually(lambda: account in r1.watches.watching())
            await eventually(lambda: catch_ups(r1) >= 1)
        assert any(
            r.name == "gateway.push.watch" and "RuntimeError" in r.getMessage()
            for r in caplog.records
        )


async def test_a_dead_loop_stops_its_watchers(dovecot: Dovecot, redis_url: str) -> None:
    """Should the manager's loop end other than by stop(), nobody renews its leases: its
    watchers stop and log out rather than outlive them beside another replica's."""
    user = dovecot.fresh_user()
    async with replicas(1, dovecot.url, redis_url) as (r1,):
        who = await principal(r1, dovecot, user)
        account = who.account_id
        sessions = dovecot_sessions(dovecot, user)
        async with r1.push.listen(account, who, None):
            await eventually(lambda: account in r1.watches.watching())
            await eventually(lambda: dovecot_sessions(dovecot, user) == sessions + 1)
            loop_task = r1.watches._loop_task
            assert loop_task is not None
            loop_task.cancel()
            await eventually(lambda: not r1.watches.watching())
            await eventually(lambda: dovecot_sessions(dovecot, user) == sessions)


async def test_watchers_start_a_bounded_number_per_round(dovecot: Dovecot, redis_url: str) -> None:
    """Twenty accounts wanted at once (a takeover, a rolling restart): STARTS_PER_ROUND
    watchers log in first, the rest in a later round, and all are watched in the end."""
    users = [dovecot.fresh_user() for _ in range(STARTS_PER_ROUND + 4)]
    async with replicas(1, dovecot.url, redis_url) as (r1,):
        whos = [await principal(r1, dovecot, user) for user in users]
        for who in whos:  # in one go, as the hub would for listeners arriving together
            r1.watches.attach(who.account_id, who)
        try:
            await eventually(lambda: bool(r1.watches.watching()))
            assert len(r1.watches.watching()) == STARTS_PER_ROUND
            await eventually(lambda: len(r1.watches.watching()) == len(whos))
        finally:
            for who in whos:
                r1.watches.detach(who.account_id, who)
        await eventually(lambda: not r1.watches.watching(), LEASE * 2)


async def test_a_round_costs_nothing_per_kept_credential_without_demand(
    dovecot: Dovecot, redis_url: str
) -> None:
    """The keeper holds credentials of 2000 accounts nobody listens to: a full round sends
    at most PROBES_PER_TICK scripts for them, not one per account (commands as Redis counts
    them)."""
    async with replicas(1, dovecot.url, redis_url) as (r1,):
        manager = r1.watches
        await manager.stop()  # its loop stays out of the count; the rounds run by hand
        for n in range(2000):
            account = f"k{secrets.token_hex(6)}{n}"
            manager._keeper.remember(account, fake_principal(account))
        client = r1.store.client
        for _ in range(3):
            before = await scripts_run(client)
            await manager._round(full=True)
            assert await scripts_run(client) - before <= PROBES_PER_TICK
        assert not manager.watching()


def fake_principal(account: str) -> Principal:
    """Credentials nobody will log in with (no listener wants their account)."""
    return Principal(Login(f"id-{account}", Credentials(account, "pw")), account)


async def scripts_run(client: object) -> int:
    stats = await client.info("commandstats")  # type: ignore[attr-defined]
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("eval", "evalsha"))
