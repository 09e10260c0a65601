"""Fair shares of the credential checks one process runs at once.

A check of credentials the gateway has not seen takes an upstream connection, and anyone can
send them. So the checks in progress are bounded three ways: all together (a quarter of the
pool, so logged-in users keep the rest), per client address and per user name (each a
quarter of that, and two), so that no single address or name can hold every check. Identical
credentials arriving together are checked once: the others wait for that check's outcome, and
a caller that gives up does not cancel it for the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
PER_USERNAME = 2


class NoShare(Exception):
    """No share became free before the deadline; ``scope`` says whose shares were taken."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"too many credential checks in progress ({scope})")
        self.scope = scope


class Shares:
    """At most ``limit`` holders per key at once; others wait for a share."""

    def __init__(self, limit: int, scope: str) -> None:
        self.limit = limit
        self.scope = scope
        self._held: dict[Hashable, int] = {}
        self._freed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable, deadline: float) -> AsyncIterator[None]:
        async with self._freed:
            while self._held.get(key, 0) >= self.limit:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NoShare(self.scope)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._freed.wait()
            self._held[key] = self._held.get(key, 0) + 1
        try:
            yield
        finally:
            async with self._freed:
                self._held[key] -= 1
                if not self._held[key]:
                    del self._held[key]
                self._freed.notify_all()


class SharedCall(Generic[T]):
    """Runs one call per key at a time; concurrent callers of a key share its outcome, and none
    of them cancels it (unlike gateway.sync.flight, whose runs stop when nobody waits: a
    credential check is short, and its outcome is remembered for later callers)."""

    def __init__(self) -> None:
        self._flights: dict[bytes, asyncio.Task[T]] = {}

    async def run(self, key: bytes, call: Callable[[], Awaitable[T]]) -> T:
        task = self._flights.get(key)
        if task is None:
            task = asyncio.ensure_future(call())
            self._flights[key] = task
            task.add_done_callback(lambda done: self._landed(key, done))
        # A caller that is cancelled leaves the check running for the others.
        return await asyncio.shield(task)

    def _landed(self, key: bytes, task: asyncio.Task[T]) -> None:
        self._flights.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved, even when every caller gave up waiting
