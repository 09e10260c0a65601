"""IDLE with NOTIFY against a real Dovecot (and plain IDLE on Cyrus): what another session's
changes turn into, how an IDLE ends, and what a watcher's dedicated connection leaves behind.

Another session (the stdlib imaplib, an independent client) makes each change; the signals are
waited for with generous timeouts and compared by kind and mailbox, never by time.
"""

from __future__ import annotations

import asyncio
import imaplib
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.credentials import Credentials, Mechanism
from gateway.imap.connection import Endpoint, ImapConnection
from gateway.imap.errors import (
    AuthenticationFailed,
    CommandFailed,
    ConnectionLost,
    UpstreamUnavailable,
)
from gateway.imap.idle import IdleSession
from gateway.imap.notify import NOTIFY_EXTENSIONS, notify_none, notify_set_personal
from gateway.imap.pool import Connector, IdentityChanged, ImapPool, Login
from gateway.imap.responses.unsolicited import (
    KeepAlive,
    MailboxListed,
    MailboxStatus,
    SelectedChanged,
    Signal,
)
from gateway.metrics import Metrics
from tests.cyrus import Cyrus
from tests.imap.upstream import endpoint, imap_processes, logged_in, signal_imap
from tests.servers import LOOPBACK, Dovecot
from tests.upstream_log import upstream_commands

WAIT = 10.0
FLAGGED = r"(\Flagged)"
MESSAGE = b"From: a@example.com\r\nSubject: idle probe\r\n\r\nhello\r\n"


async def wait_for(session: IdleSession, wanted: Callable[[Signal], bool]) -> list[Signal]:
    """Signals up to and including the first ``wanted`` one; fails after WAIT seconds."""
    seen: list[Signal] = []
    deadline = time.monotonic() + WAIT
    while (left := deadline - time.monotonic()) > 0:
        signal_ = await session.next(left)
        if signal_ is None:
            break
        seen.append(signal_)
        if wanted(signal_):
            return seen
    raise AssertionError(f"no wanted signal within {WAIT} s; saw {seen}")


def status_of(name: str, *items: str) -> Callable[[Signal], bool]:
    """A STATUS of ``name`` carrying at least ``items``."""
    return lambda s: isinstance(s, MailboxStatus) and s.name == name and set(items) <= set(s.items)


def modseq_of(s: Signal, name: str) -> int:
    """HIGHESTMODSEQ of a STATUS of ``name``; 0 for any other signal."""
    if isinstance(s, MailboxStatus) and s.name == name:
        return s.items.get("HIGHESTMODSEQ", 0)
    return 0


def listed(name: str, *attributes: str, old_name: str | None = None) -> Callable[[Signal], bool]:
    """A LIST of ``name`` with at least ``attributes`` and exactly ``old_name``."""

    def match(s: Signal) -> bool:
        return (
            isinstance(s, MailboxListed)
            and s.name == name
            and set(attributes) <= s.attributes
            and s.old_name == old_name
        )

    return match


async def in_thread(client: imaplib.IMAP4, *calls: tuple[str, tuple[object, ...]]) -> None:
    """Run imaplib calls (blocking) off the event loop, each checked for OK."""

    def run() -> None:
        for name, args in calls:
            typ, data = getattr(client, name)(*args)
            assert typ == "OK", (name, data)

    await asyncio.to_thread(run)


async def notifying(dovecot: Dovecot, user: str) -> ImapConnection:
    conn = await logged_in(dovecot, user)
    assert {"NOTIFY", "IDLE", "CONDSTORE"} <= conn.capabilities
    await conn.enable(*NOTIFY_EXTENSIONS)
    assert "CONDSTORE" in conn.enabled
    await conn.execute(notify_set_personal())
    return conn


async def test_notify_signals_every_kind_of_change(dovecot: Dovecot) -> None:
    """The table of the plan (np2.py): each change by another session arrives as its Signal,
    with nothing selected."""
    user = dovecot.fresh_user()
    other = dovecot.client(user)
    await in_thread(other, ("create", ("Other",)))
    conn = await notifying(dovecot, user)
    assert conn.selected is None
    try:
        async with conn.idle() as session:
            await in_thread(other, ("append", ("INBOX", None, None, MESSAGE)))
            [*_, appended] = await wait_for(session, status_of("INBOX", "HIGHESTMODSEQ"))
            assert isinstance(appended, MailboxStatus) and appended.items["MESSAGES"] == 1

            await in_thread(other, ("select", ("INBOX",)), ("store", ("1", "+FLAGS", FLAGGED)))
            # CONDSTORE enabled: a pure flag change moves HIGHESTMODSEQ, so it is reported
            # (the APPEND's STATUS may come twice: only a higher modseq is the flag's).
            modseq = appended.items["HIGHESTMODSEQ"]
            await wait_for(session, lambda s: modseq < modseq_of(s, "INBOX"))

            await in_thread(other, ("append", ("Other", None, None, MESSAGE)))
            await wait_for(session, status_of("Other"))

            await in_thread(other, ("create", ("Probe1",)))
            await wait_for(session, listed("Probe1", old_name=None))

            await in_thread(other, ("rename", ("Probe1", "Probe2")))
            await wait_for(session, listed("Probe2", old_name="Probe1"))

            await in_thread(other, ("delete", ("Probe2",)))
            await wait_for(session, listed("Probe2", "\\NonExistent"))
        # DONE was answered: the same connection takes commands again.
        assert conn.usable
        await conn.execute(notify_none())
        await conn.noop()
    finally:
        other.logout()
        await conn.logout()


async def test_non_ascii_mailbox_names_are_decoded(dovecot: Dovecot) -> None:
    user = dovecot.fresh_user()
    other = dovecot.client(user)
    conn = await notifying(dovecot, user)
    try:
        async with conn.idle() as session:
            # "Entwürfe" in modified UTF-7 (RFC 3501 5.1.3), as imaplib sends it untouched.
            await in_thread(other, ("create", ("Entw&APw-rfe",)))
            await wait_for(session, listed("Entwürfe"))
    finally:
        other.logout()
        await conn.logout()


async def test_idle_again_after_a_quiet_period(dovecot: Dovecot) -> None:
    """A watcher leaves IDLE before the server's timeout and re-enters (RFC 2177 3: at most
    29 minutes); simulated with a short wait. The second IDLE still hears changes."""
    user = dovecot.fresh_user()
    other = dovecot.client(user)
    conn = await notifying(dovecot, user)
    try:
        async with conn.idle() as session:
            quiet = await session.next(0.3)
            assert quiet is None or isinstance(quiet, KeepAlive | MailboxStatus)
        async with conn.idle() as session:
            await in_thread(other, ("append", ("INBOX", None, None, MESSAGE)))
            await wait_for(session, status_of("INBOX"))
        assert conn.usable
    finally:
        other.logout()
        await conn.logout()


async def test_bye_during_idle_is_a_lost_connection(private_dovecot: Dovecot) -> None:
    conn = await notifying(private_dovecot, "alice")
    async with conn.idle() as session:
        # Dovecot's imap process answers SIGTERM with "* BYE Server shutting down."
        assert signal_imap(private_dovecot, "alice", signal.SIGTERM) == 1
        with pytest.raises(ConnectionLost, match="BYE"):
            await wait_for(session, lambda s: False)
        with pytest.raises(ConnectionLost):
            await session.next(0.1)
    assert conn.broken
    await conn.logout()


async def test_cancelled_idle_breaks_the_connection(dovecot: Dovecot) -> None:
    conn = await notifying(dovecot, dovecot.fresh_user())

    async def idle_forever() -> None:
        async with conn.idle() as session:
            await session.next(None)

    task = asyncio.create_task(idle_forever())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert conn.broken
    with pytest.raises(ConnectionLost):
        await conn.noop()
    await conn.logout()


async def test_commands_are_refused_during_idle(
    dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await notifying(dovecot, dovecot.fresh_user())
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    upstream_commands(caplog)
    try:
        async with conn.idle():
            with pytest.raises(RuntimeError):
                await conn.noop()
        await conn.noop()  # the refusal sent nothing: the stream is in step
        assert upstream_commands(caplog) == ["IDLE", "DONE", "NOOP"]
    finally:
        await conn.logout()


async def test_no_idle_capability_sends_nothing(dovecot: Dovecot) -> None:
    conn = await logged_in(dovecot, dovecot.fresh_user())
    conn.capabilities = conn.capabilities - {"IDLE"}
    sent = conn.commands_sent
    try:
        with pytest.raises(CommandFailed):
            async with conn.idle():
                pass
        assert conn.commands_sent == sent and conn.usable
    finally:
        await conn.logout()


async def pool_for(dovecot: Dovecot, user: str) -> tuple[ImapPool, Login]:
    """A pool on ``dovecot`` and a checked login of ``user``, as the gateway holds them."""
    pool = ImapPool(
        connector(dovecot), max_per_user=2, max_total=4, idle_timeout=60, wait_timeout=5
    )
    return pool, await pool.login(Credentials(user, dovecot.users[user], Mechanism.PASSWORD))


def pool_gauge(metrics: Metrics, state: str) -> float | None:
    return metrics.registry.get_sample_value("jmap_gateway_imap_pool_connections", {"state": state})


def dovecot_log(dovecot: Dovecot) -> str:
    return (Path(dovecot.root) / "log" / "dovecot.log").read_text()


def connector(dovecot: Dovecot) -> Connector:
    async def connect(credentials: Credentials) -> tuple[ImapConnection, str]:
        conn = await ImapConnection.open(endpoint(dovecot))
        try:
            await conn.login(credentials.username, credentials.secret)
        except BaseException:
            await conn.logout()
            raise
        return conn, credentials.username

    return connect


async def test_dedicated_connection_logs_out_on_exit(dovecot: Dovecot) -> None:
    """Outside the pooled set, counted as "watch", and logged out (the upstream's own log
    says "Logged out", which an aborted connection never gets)."""
    user = dovecot.fresh_user()
    pool, login = await pool_for(dovecot, user)
    before = dovecot_log(dovecot).count(f"imap({user})")
    metrics = Metrics()
    metrics.watch_pool(pool)
    async with pool.dedicated(login) as conn:
        assert pool.stats().watch == 1 and pool.stats().total == 1  # the login's, pooled
        assert pool_gauge(metrics, "watch") == 1 and pool_gauge(metrics, "idle") == 1
        assert len(imap_processes(dovecot, user)) == 2
        async with conn.idle() as session:
            assert await session.next(0.1) is None or conn.usable
    assert pool.stats().watch == 0 and pool_gauge(metrics, "watch") == 0
    assert len(imap_processes(dovecot, user)) == 1  # the pooled one remains
    lines = dovecot_log(dovecot).splitlines()
    mine = [line for line in lines if f"imap({user})" in line][before:]
    assert any("Logged out" in line for line in mine), mine
    await pool.close()


async def test_closing_the_pool_ends_a_watch_that_does_not_leave(dovecot: Dovecot) -> None:
    """A holder still in IDLE when the pool closes: after the grace its connection is cut,
    the holder sees ConnectionLost, and the upstream's process for it ends."""
    user = dovecot.fresh_user()
    pool, login = await pool_for(dovecot, user)
    idling = asyncio.Event()

    async def watch() -> None:
        async with pool.dedicated(login) as conn, conn.idle() as session:
            idling.set()
            while True:
                await session.next(None)

    task = asyncio.create_task(watch())
    await asyncio.wait_for(idling.wait(), WAIT)
    await pool.close(grace=0.3)
    with pytest.raises(ConnectionLost):
        await asyncio.wait_for(task, WAIT)
    assert pool.stats().watch == 0
    deadline = time.monotonic() + WAIT
    while imap_processes(dovecot, user) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert imap_processes(dovecot, user) == []


async def test_a_closed_pool_opens_no_dedicated_connection(dovecot: Dovecot) -> None:
    user = dovecot.fresh_user()
    pool, login = await pool_for(dovecot, user)
    await pool.close()
    with pytest.raises(UpstreamUnavailable):
        async with pool.dedicated(login):
            pass


async def test_dedicated_connection_refuses_a_wrong_password(dovecot: Dovecot) -> None:
    user = dovecot.fresh_user()
    pool, login = await pool_for(dovecot, user)
    wrong = Login(login.identity, Credentials(user, "not-the-password", Mechanism.PASSWORD))
    with pytest.raises(AuthenticationFailed):
        async with pool.dedicated(wrong):
            pass
    assert pool.stats().watch == 0
    await pool.close()


async def test_dedicated_connection_refuses_a_wrong_identity(dovecot: Dovecot) -> None:
    user = dovecot.fresh_user()
    pool, login = await pool_for(dovecot, user)
    stranger = Login("someone-else", login.credentials)
    with pytest.raises(IdentityChanged):
        async with pool.dedicated(stranger):
            pass
    assert pool.stats().watch == 0
    await pool.close()


async def test_cyrus_idle_on_inbox_signals_an_append(cyrus: Cyrus) -> None:
    """Cyrus has no NOTIFY: IDLE with INBOX examined reports EXISTS for new mail (facts in
    /work/briefs/cyrus-idle-facts.md)."""
    user = cyrus.fresh_user()
    conn = await ImapConnection.open(Endpoint(host=LOOPBACK, port=cyrus.imap_port, tls="plain"))
    await conn.login(user, cyrus.users[user])
    other = cyrus.client(user)
    try:
        assert "NOTIFY" not in conn.capabilities and "IDLE" in conn.capabilities
        await conn.select("INBOX", read_only=True)
        async with conn.idle() as session:
            await in_thread(other, ("append", ("INBOX", None, None, MESSAGE)))
            got = await wait_for(session, lambda s: s == SelectedChanged("EXISTS"))
            assert got[-1] == SelectedChanged("EXISTS")
            await in_thread(other, ("select", ("INBOX",)), ("store", ("1", "+FLAGS", FLAGGED)))
            await wait_for(session, lambda s: s == SelectedChanged("FETCH"))
        await conn.noop()
    finally:
        other.logout()
        await conn.logout()
