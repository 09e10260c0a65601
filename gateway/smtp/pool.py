"""Idle sessions kept for reuse, per authorization, and the bounds on sessions open at once.

A session goes back to the pool only after a clean transaction; it is taken again only by a
send with the same authorization (same user, same secret), within :data:`IDLE_SECONDS`, and
after an RSET (RFC 5321 4.1.1.5) shows the server still there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator

from gateway.smtp.connection import Session

# Postfix drops an idle client after smtpd_timeout (300 s by default); reuse well before that.
IDLE_SECONDS = 30.0
# Transactions at once for one authorization (a user's parallel sends wait for each other
# beyond this) and for the whole process; idle sessions kept at most.
MAX_PER_USER = 2
MAX_TOTAL = 32
MAX_IDLE = 16


class SessionPool:
    """Slots (bounded sends at once) and idle sessions, keyed by an authorization's pool key."""

    def __init__(
        self,
        *,
        max_per_user: int = MAX_PER_USER,
        max_total: int = MAX_TOTAL,
        max_idle: int = MAX_IDLE,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self._max_per_user = max_per_user
        self._total = asyncio.Semaphore(max_total)
        self._users: dict[tuple[str, ...], asyncio.Semaphore] = {}
        self._using: defaultdict[tuple[str, ...], int] = defaultdict(int)
        self._idle: deque[tuple[tuple[str, ...], Session]] = deque()
        self._max_idle = max_idle
        self._idle_seconds = idle_seconds

    @contextlib.asynccontextmanager
    async def slot(self, key: tuple[str, ...]) -> AsyncIterator[None]:
        """Hold one of the user's and one of the process's transaction slots."""
        user = self._users.setdefault(key, asyncio.Semaphore(self._max_per_user))
        self._using[key] += 1
        try:
            async with user, self._total:
                yield
        finally:
            self._using[key] -= 1
            if not self._using[key]:
                del self._using[key]
                del self._users[key]

    def take(self, key: tuple[str, ...]) -> tuple[Session | None, list[Session]]:
        """An idle session of ``key`` still fresh, and the stale ones to close."""
        stale = self._expire()
        for entry in reversed(self._idle):
            if entry[0] == key:
                self._idle.remove(entry)
                return entry[1], stale
        return None, stale

    def give(self, key: tuple[str, ...], session: Session) -> list[Session]:
        """Keep a session after a clean transaction; returns those to close (stale or beyond
        :data:`MAX_IDLE`, oldest first)."""
        session.idle_since = time.monotonic()
        self._idle.append((key, session))
        stale = self._expire()
        while len(self._idle) > self._max_idle:
            stale.append(self._idle.popleft()[1])
        return stale

    def drain(self) -> list[Session]:
        """Every idle session, for closing at shutdown."""
        sessions = [session for _, session in self._idle]
        self._idle.clear()
        return sessions

    @property
    def idle(self) -> int:
        return len(self._idle)

    def _expire(self) -> list[Session]:
        deadline = time.monotonic() - self._idle_seconds
        stale = []
        while self._idle and (
            self._idle[0][1].idle_since < deadline or not self._idle[0][1].usable
        ):
            stale.append(self._idle.popleft()[1])
        return stale
