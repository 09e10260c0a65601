"""Pooled upstream IMAP connections, per user, with a global ceiling.

Every connection is logged in as one user, so the pool is a set of per-user pools, keyed by the
upstream's own identity of the user (:mod:`gateway.imap.identity`), never by the spelling of the
login: ``ALICE`` and ``alice`` share one pool and one limit. The limits:

* a user holds at most ``max_per_user`` connections, so one user cannot exhaust the pool;
* the process holds at most ``max_total``; when that is reached, an idle connection of another
  user is closed to make room, and only when every connection is busy does a request wait
  (``wait_timeout``, then :class:`PoolExhausted`).

A credential check (:meth:`ImapPool.login`) opens a connection before anyone knows whose it
is; once logged in it joins its user's pool, replacing their oldest idle connection at their
limit, or is logged out when all of theirs are busy.

Idle connections are reused most-recently-used first (so surplus ones age out), checked with a
NOOP when they have been idle a while, and closed with LOGOUT after ``idle_timeout``.

A watcher's connection (:meth:`ImapPool.dedicated`) lives outside all this: it is opened for
one long IDLE, never lent to anyone else, and logged out when its holder is done. It does not
count against the limits above (the push layer keeps one per watched account), only in the
stats, as "watch".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from gateway.credentials import Credentials
from gateway.imap.connection import ImapConnection
from gateway.imap.errors import ImapError, UpstreamUnavailable

log = logging.getLogger(__name__)

HEALTH_CHECK_AFTER = 30.0
HEALTH_CHECK_TIMEOUT = 5.0
# On close, how long connections still lent out get to come back for their LOGOUT.
CLOSE_GRACE_SECONDS = 2.0


class PoolExhausted(UpstreamUnavailable):
    """No upstream connection became free in time."""


class IdentityChanged(UpstreamUnavailable):
    """A new connection logged in as another user than the one verified earlier: the
    upstream's id of the user's INBOX changed (mailbox recreated). The next credential check
    finds the new one."""


@dataclass(frozen=True)
class Login:
    """A verified upstream login: the upstream's identity of the user, and credentials that
    open more connections as them."""

    identity: str
    credentials: Credentials


# Opens a connection, logs in and returns it with the upstream's identity of the user.
Connector = Callable[[Credentials], Awaitable[tuple[ImapConnection, str]]]


@dataclass
class _UserPool:
    idle: deque[ImapConnection] = field(default_factory=deque)
    count: int = 0  # idle + busy + being opened
    capabilities: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PoolStats:
    users: int
    total: int
    idle: int
    opened: int  # connections opened (each one an upstream login) since start
    commands: int  # upstream commands sent since start, logins and health checks included
    round_trips: int  # of those, the waits for answers (pipelined commands share one)
    watch: int = 0  # dedicated connections (watchers' IDLE), outside ``total``


class ImapPool:
    """See the module docstring. One instance per process."""

    def __init__(
        self,
        connector: Connector,
        *,
        max_per_user: int,
        max_total: int,
        idle_timeout: float,
        wait_timeout: float,
    ) -> None:
        self._connector = connector
        self.max_per_user = max_per_user
        self.max_total = max_total
        self.idle_timeout = idle_timeout
        self.wait_timeout = wait_timeout
        self._users: dict[str, _UserPool] = {}
        self._total = 0
        self._opened = 0
        self._live: set[ImapConnection] = set()
        self._retired_commands = 0
        self._retired_round_trips = 0
        self._changed = asyncio.Condition()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self._logouts: set[asyncio.Task[None]] = set()
        self._watch: set[ImapConnection] = set()

    # -- public API ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def connection(self, login: Login) -> AsyncIterator[ImapConnection]:
        """Borrow a logged-in connection of ``login``'s user for one piece of work.

        ``login`` must come from :meth:`login`: an idle connection is handed out without
        logging in again, and a new one must log in as the same user.
        """
        conn = await self._acquire(login)
        try:
            yield conn
        finally:
            await self._release(login.identity, conn)

    @contextlib.asynccontextmanager
    async def dedicated(self, login: Login) -> AsyncIterator[ImapConnection]:
        """A fresh connection of ``login``'s user for one holder alone (a watcher's IDLE),
        logged out on exit; never pooled. Raises like :meth:`connection`:
        AuthenticationFailed, UpstreamUnavailable (IdentityChanged among them)."""
        self._refuse_when_closed()
        conn, identity = await self._connect(login.credentials)
        self._watch.add(conn)
        try:
            if identity != login.identity:
                raise IdentityChanged("the upstream's identity of this user changed")
            yield conn
        finally:
            self._watch.discard(conn)
            await self._logout(conn)
            await self._notify()

    async def identify(self, credentials: Credentials) -> Login:
        """Whose ``credentials`` are, from a login of their own that is logged out at once:
        for credentials that must be checked before anything is done with them (a master
        user's login for a user, whose account must be the one it is meant for). Outside
        the limits, like :meth:`dedicated`, whose connection it precedes."""
        self._refuse_when_closed()
        conn, identity = await self._connect(credentials)
        await self._logout(conn)
        return Login(identity, credentials)

    async def login(self, credentials: Credentials) -> Login:
        """Check ``credentials`` with a fresh login and keep the connection for later use."""
        conn, identity = await self._open_unattributed(credentials)
        self._adopt(identity, conn)
        await self._notify()
        return Login(identity, credentials)

    def capabilities(self, identity: str) -> frozenset[str]:
        """What the upstream offered this user after login (empty before the first login)."""
        user = self._users.get(identity)
        return user.capabilities if user else frozenset()

    def stats(self) -> PoolStats:
        idle = sum(len(u.idle) for u in self._users.values())
        commands = self._retired_commands + sum(c.commands_sent for c in self._live)
        round_trips = self._retired_round_trips + sum(c.round_trips for c in self._live)
        return PoolStats(
            users=len(self._users),
            total=self._total,
            idle=idle,
            opened=self._opened,
            commands=commands,
            round_trips=round_trips,
            watch=len(self._watch),
        )

    def start(self) -> None:
        """Start closing idle connections in the background."""
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap(), name="imap-pool-reaper")

    async def close(self, grace: float = CLOSE_GRACE_SECONDS) -> None:
        """Refuse new work and LOGOUT every connection, so the upstream sees a clean end.

        Idle connections are logged out at once. Connections still lent out (the work of a
        request cut at shutdown) get ``grace`` seconds to come back and be logged out too;
        one broken half way cannot say LOGOUT and is just closed.
        """
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        idle = [c for u in self._users.values() for c in u.idle]
        for user in self._users.values():
            user.count -= len(user.idle)
            user.idle.clear()
        self._total -= len(idle)
        await asyncio.gather(*(self._logout(c) for c in idle))
        deadline = time.monotonic() + grace
        try:
            while self._total > 0 or self._watch:  # each release notifies and logs out
                await self._wait(deadline)
        except PoolExhausted:
            log.warning(
                "closing with %d upstream connections in use, %d watching",
                self._total,
                len(self._watch),
            )
            for conn in self._watch:
                conn.abort()  # its holder sees ConnectionLost and leaves
        while self._logouts:
            await asyncio.gather(*list(self._logouts), return_exceptions=True)

    async def _logout(self, conn: ImapConnection) -> None:
        await conn.logout()
        if conn in self._live:
            self._live.discard(conn)
            self._retired_commands += conn.commands_sent
            self._retired_round_trips += conn.round_trips

    # -- acquiring and releasing ---------------------------------------------------------------

    async def _acquire(self, login: Login) -> ImapConnection:
        deadline = time.monotonic() + self.wait_timeout
        while True:
            self._refuse_when_closed()
            conn = await self._take_idle(login.identity)
            if conn is not None:
                return conn
            if self._reserve(login.identity):
                return await self._open_for(login)
            await self._wait(deadline)

    async def _open_unattributed(self, credentials: Credentials) -> tuple[ImapConnection, str]:
        """A new connection counted in the total only, until its login says whose it is."""
        deadline = time.monotonic() + self.wait_timeout
        while not (self._total < self.max_total or self._evict_idle(keep=None)):
            self._refuse_when_closed()
            await self._wait(deadline)
        self._refuse_when_closed()
        self._total += 1
        try:
            conn, identity = await self._connect(credentials)
        except BaseException:
            self._total -= 1
            await self._notify()
            raise
        return conn, identity

    def _adopt(self, identity: str, conn: ImapConnection) -> None:
        """File a checked login's connection under its user; at their limit it replaces
        their oldest idle connection, or leaves if all of theirs are busy."""
        user = self._users.setdefault(identity, _UserPool())
        user.capabilities = conn.capabilities
        if user.count >= self.max_per_user and user.idle:
            user.count -= 1
            self._total -= 1
            self._background_logout(user.idle.popleft())
        if user.count < self.max_per_user:
            user.count += 1
            user.idle.append(conn)
            return
        self._total -= 1
        self._background_logout(conn)

    def _refuse_when_closed(self) -> None:
        if self._closed:
            raise UpstreamUnavailable("the gateway is shutting down")

    async def _take_idle(self, identity: str) -> ImapConnection | None:
        user = self._users.get(identity)
        while user and user.idle:
            conn = user.idle.pop()
            try:
                healthy = await self._healthy(conn)
            except BaseException:
                # Cancelled during the NOOP: the connection is in doubt and out of the pool.
                self._forget(identity)
                conn.abort()
                raise
            if healthy:
                return conn
            self._forget(identity)
            self._background_logout(conn)
        return None

    async def _healthy(self, conn: ImapConnection) -> bool:
        if not conn.usable:
            return False
        if time.monotonic() - conn.last_used < HEALTH_CHECK_AFTER:
            return True
        try:
            await conn.noop(timeout=HEALTH_CHECK_TIMEOUT)
        except ImapError:
            conn.abort()
            return False
        return True

    def _reserve(self, identity: str) -> bool:
        """Take a slot for a new connection of the user ``identity`` if the limits allow."""
        user = self._users.setdefault(identity, _UserPool())
        if user.count >= self.max_per_user:
            return False
        if self._total >= self.max_total and not self._evict_idle(identity):
            return False
        user.count += 1
        self._total += 1
        return True

    def _evict_idle(self, keep: str | None) -> bool:
        """Close the least recently used idle connection of another user than ``keep``."""
        candidates = [
            (user.idle[0].last_used, name)
            for name, user in self._users.items()
            if name != keep and user.idle
        ]
        if not candidates:
            return False
        _, name = min(candidates)
        conn = self._users[name].idle.popleft()
        self._forget(name)
        self._background_logout(conn)
        return True

    async def _connect(self, credentials: Credentials) -> tuple[ImapConnection, str]:
        """Open and log in; the caller has reserved the slot and frees it if this fails."""
        conn, identity = await self._connector(credentials)
        self._opened += 1
        if self._closed:
            # The pool closed while this login was on its way: nobody will log it out later.
            await conn.logout()
            raise UpstreamUnavailable("the gateway is shutting down")
        self._live.add(conn)
        return conn, identity

    async def _open_for(self, login: Login) -> ImapConnection:
        try:
            conn, identity = await self._connect(login.credentials)
        except BaseException:
            self._forget(login.identity)
            await self._notify()
            raise
        if identity != login.identity:
            self._forget(login.identity)
            self._background_logout(conn)
            await self._notify()
            raise IdentityChanged("the upstream's identity of this user changed")
        self._users[login.identity].capabilities = conn.capabilities
        return conn

    async def _release(self, identity: str, conn: ImapConnection) -> None:
        user = self._users[identity]
        if conn.usable and not self._closed:
            user.idle.append(conn)
        else:
            self._forget(identity)
            self._background_logout(conn)
        await self._notify()

    def _forget(self, identity: str) -> None:
        user = self._users[identity]
        user.count -= 1
        self._total -= 1
        if user.count == 0:
            del self._users[identity]

    async def _wait(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PoolExhausted("no upstream connection became free in time")
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _background_logout(self, conn: ImapConnection) -> None:
        task = asyncio.create_task(self._logout(conn))
        self._logouts.add(task)
        task.add_done_callback(self._logouts.discard)

    # -- idle reaper ---------------------------------------------------------------------------

    async def _reap(self) -> None:
        interval = max(1.0, min(self.idle_timeout / 2, 30.0))
        while True:
            await asyncio.sleep(interval)
            self.close_idle(older_than=self.idle_timeout)

    def close_idle(self, older_than: float) -> int:
        """Close idle connections unused for ``older_than`` seconds; returns how many."""
        cutoff = time.monotonic() - older_than
        closed = 0
        for name in list(self._users):
            user = self._users[name]
            while user.idle and user.idle[0].last_used <= cutoff:
                conn = user.idle.popleft()
                self._forget(name)
                self._background_logout(conn)
                closed += 1
        return closed
