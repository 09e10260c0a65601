"""One account's upstream watcher: a dedicated IMAP connection waiting in IDLE, and a catch-up
on that same connection whenever the upstream says something moved.

The watcher never publishes anything itself: its catch-up writes the index through the
journal, and the hub announces what the journal committed (one path for every change).

Two strategies, by what the upstream offers:

* NOTIFY (RFC 5465; Dovecot): ENABLE CONDSTORE (without it Dovecot reports no pure flag
  change) and QRESYNC where offered, NOTIFY SET personal, a fresh catch-up, then IDLE with no
  mailbox selected. Any STATUS or LIST in IDLE ends it (after a short debounce: Dovecot sends
  an APPEND's STATUS twice), and the catch-up runs, then IDLE again.
* IDLE only (RFC 2177; Cyrus, or a server that refuses the NOTIFY SET): EXAMINE INBOX and
  IDLE, which reports INBOX alone; a catch-up runs on a signal and at least every
  GATEWAY_PUSH_POLL_SECONDS for the other folders (the catch-up's LIST-STATUS finds them).

IDLE is restarted every GATEWAY_PUSH_IDLE_RESTART_SECONDS (RFC 2177: a server may log off a
client idle for 30 minutes). A change made while the catch-up runs is not lost: NOTIFY
reports it once IDLE resumes, and anything before the catch-up's LIST is in its figures.
A lost connection is reopened with backoff; refused credentials end the watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from gateway.auth import Principal
from gateway.cache.locks import LockTimeout
from gateway.cache.store import STORE_UNAVAILABLE
from gateway.imap.connection import ImapConnection
from gateway.imap.errors import AuthenticationFailed, ImapError
from gateway.imap.idle import IdleSession
from gateway.imap.notify import can_notify, enable_for_notify, notify_set_personal
from gateway.imap.responses.unsolicited import KeepAlive, Signal

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger(__name__)

# Seconds of further signals gathered into one catch-up after the first (an APPEND gives
# Dovecot's NOTIFY two STATUS lines, a multi-message move many).
DEBOUNCE_SECONDS = 0.1
# Reconnect backoff after a failure: doubling from the first to the last, with jitter.
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
# A connection that served this long is healthy: the next failure starts from the first delay.
HEALTHY_SECONDS = 60.0

# Failures a watcher survives by reconnecting (after backoff).
_RETRIED: tuple[type[Exception], ...] = (ImapError, LockTimeout, *STORE_UNAVAILABLE)


async def event_within(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``event``; whether it is set. (Not asyncio.wait_for, which
    on Python 3.11 can swallow a cancellation arriving as its timeout fires.)"""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


class _Stopped(Exception):
    """The watcher was asked to stop (lease lost, demand gone, shutdown)."""


async def watch_account(
    svc: Services,
    account_id: str,
    principal: Principal,
    until: asyncio.Event,
    *,
    on_auth_failed: Callable[[Principal], None],
) -> None:
    """Watch ``account_id`` upstream as ``principal`` until ``until`` is set (the lease was
    lost, demand ended, the process stops), then leave IDLE and LOGOUT.

    Upstream and Redis trouble is retried with backoff; a login refused calls
    ``on_auth_failed(principal)`` and returns. Raises nothing but cancellation (which leaves
    no connection behind, but cuts rather than logs out one in IDLE).
    """
    watcher = _Watcher(svc, account_id, principal, until)
    delay = BACKOFF_FIRST_SECONDS
    loop = asyncio.get_running_loop()
    while not until.is_set():
        started = loop.time()
        try:
            await watcher.run()
            return
        except AuthenticationFailed:
            log.warning("push watcher of %s: credentials refused upstream", account_id)
            on_auth_failed(principal)
            return
        except _RETRIED as exc:
            log.warning("push watcher of %s: %s; reconnecting", account_id, type(exc).__name__)
        if loop.time() - started >= HEALTHY_SECONDS:
            delay = BACKOFF_FIRST_SECONDS
        await event_within(until, delay * random.uniform(0.5, 1.0))  # noqa: S311
        delay = min(delay * 2, BACKOFF_MAX_SECONDS)


class _Watcher:
    """One connection's life of the watcher (see the module docstring)."""

    def __init__(
        self, svc: Services, account_id: str, principal: Principal, until: asyncio.Event
    ) -> None:
        self._svc = svc
        self._principal = principal
        self._until = until
        self._index = svc.index(account_id)
        settings = svc.settings
        self._restart = settings.push_idle_restart_seconds
        self._poll = min(settings.push_poll_seconds, self._restart)

    async def run(self) -> None:
        """Returns once ``until`` is set; raises what ends the connection."""
        async with self._svc.pool.dedicated(self._principal.login) as conn:
            with contextlib.suppress(_Stopped):
                if can_notify(conn.capabilities) and await self._notify_set(conn):
                    await self._notify(conn)
                else:
                    await self._idle(conn)

    async def _notify_set(self, conn: ImapConnection) -> bool:
        """ENABLE and NOTIFY SET in one round trip; False when the server refuses the NOTIFY
        SET (an event it does not support, a NOTIFY limit): then INBOX's IDLE and the poll
        serve, rather than a reconnect loop that would be refused the same way."""
        # CONDSTORE first: without it Dovecot reports no pure flag change (gateway.imap.notify).
        enable = enable_for_notify(conn.capabilities, conn.enabled)
        commands = (notify_set_personal(),) if enable is None else (enable, notify_set_personal())
        results = await conn.execute_pipelined(*commands, check=False)
        if enable is not None:
            conn.note_enabled(results[0])
        told = results[-1].tagged
        if told.status == "OK":
            return True
        log.warning(
            "push watcher: the upstream refused NOTIFY SET (%s %s); watching INBOX by IDLE and "
            "the other folders every %s s",
            told.status,
            told.code.name if told.code else "",
            self._poll,
        )
        return False

    async def _notify(self, conn: ImapConnection) -> None:
        await self._catch_up(conn)
        while True:
            await conn.unselect()
            if await self._wait(conn, self._restart):
                await self._catch_up(conn)

    async def _idle(self, conn: ImapConnection) -> None:
        await self._catch_up(conn)
        while True:
            await conn.select("INBOX", read_only=True)
            await self._wait(conn, self._poll)
            # A signal, or the poll period passed: either way the folders IDLE cannot see.
            await self._catch_up(conn)

    async def _wait(self, conn: ImapConnection, period: float) -> bool:
        """Wait in IDLE (or, without it, just wait) up to ``period`` seconds for a sign
        that something changed upstream; True if one came."""
        if "IDLE" not in conn.capabilities:
            if await event_within(self._until, period):
                raise _Stopped
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + period
        async with conn.idle() as session:
            while (remaining := deadline - loop.time()) > 0:
                signal = await self._next(session, remaining)
                if signal is None:
                    return False
                if isinstance(signal, KeepAlive):
                    continue
                self._svc.metrics.watch_signal()
                settle = loop.time() + DEBOUNCE_SECONDS
                while (left := settle - loop.time()) > 0:
                    if await self._next(session, left) is None:
                        break
                return True
        return False

    async def _next(self, session: IdleSession, timeout: float) -> Signal | None:
        """The session's next signal within ``timeout`` (None: none came). Leaves the IDLE
        block cleanly (DONE) by raising _Stopped when ``until`` is set meanwhile."""
        signal = asyncio.ensure_future(session.next(timeout))
        stop = asyncio.ensure_future(self._until.wait())
        try:
            await asyncio.wait({signal, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not signal.done():
                signal.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await signal
        if self._until.is_set():
            raise _Stopped
        return signal.result()

    async def _catch_up(self, conn: ImapConnection) -> None:
        """CatchUp.run on this very connection (one upstream connection per watched account;
        contracts15 Q3). Stopping waits for it: it is bounded, and cutting it would leave
        the connection unusable for its LOGOUT."""
        metrics = self._svc.metrics
        try:
            await self._svc.catch_up.run(self._index, lambda: _lent(conn), fresh=True)
        except BaseException:
            metrics.watch_catch_up("failed")
            raise
        metrics.watch_catch_up("ok")
        if self._until.is_set():
            raise _Stopped


@contextlib.asynccontextmanager
async def _lent(conn: ImapConnection) -> AsyncIterator[ImapConnection]:
    """The watcher's own connection as the catch-up's Connect (it stays the watcher's)."""
    yield conn
