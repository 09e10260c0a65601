"""One sync at a time per account in this process; late callers join the one running."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(eq=False)
class _Flight:
    """A run in progress and how many callers still wait for it (its starter included)."""

    task: asyncio.Task[None]
    waiting: int = 1


class SingleFlight:
    """Runs one coroutine per key at a time; callers arriving meanwhile share its outcome.

    The run is a task of its own that takes what it needs itself (the catch-up borrows its own
    upstream connection), so a caller that goes away (its client disconnected) returns at once
    and does not take the run down while others wait for it; once nobody waits, it is
    cancelled.

    Another process's sync of the same account is kept out by the account's Redis lease,
    which the coroutine takes itself.
    """

    def __init__(self) -> None:
        self._running: dict[str, _Flight] = {}

    def waiting(self, key: str) -> int:
        """How many callers wait for the run of ``key`` in progress (0: none runs)."""
        flight = self._current(key)
        return flight.waiting if flight is not None else 0

    async def run(
        self, key: str, work: Callable[[], Awaitable[None]], *, fresh: bool = False
    ) -> None:
        """Run ``work`` for ``key`` unless a run is in flight, which is joined instead.

        ``fresh`` asks for a run that starts after the caller's own upstream changes: one in
        flight on arrival is waited for but does not count, one started since does. A run that
        failed or was cancelled does not count either; the caller then runs its own (and the
        request that started the failed one reports its failure).
        """
        stale = self._current(key) if fresh else None
        while (flight := self._current(key)) is not None:
            if await self._join(flight) and flight is not stale:
                return
        flight = _Flight(asyncio.ensure_future(work()))
        self._running[key] = flight
        flight.task.add_done_callback(lambda _: self._ended(key, flight))
        await self._lead(flight)

    def _current(self, key: str) -> _Flight | None:
        flight = self._running.get(key)
        return flight if flight is not None and not flight.task.done() else None

    def _ended(self, key: str, flight: _Flight) -> None:
        """The run is over, whoever still waits: late callers start a new one."""
        if self._running.get(key) is flight:
            del self._running[key]
        if not flight.task.cancelled():
            # Retrieved, so never logged: a failure is the waiters' to report, if any remain.
            flight.task.exception()

    async def _join(self, flight: _Flight) -> bool:
        """Wait for ``flight``; True if it succeeded."""
        flight.waiting += 1
        await self._wait(flight)
        return not flight.task.cancelled() and flight.task.exception() is None

    async def _lead(self, flight: _Flight) -> None:
        """Wait for the run this caller started; raise what it raised."""
        await self._wait(flight)
        flight.task.result()

    async def _wait(self, flight: _Flight) -> None:
        """Wait for the run to end, then stop counting as its waiter; a caller cancelled
        meanwhile leaves it (see _leave)."""
        try:
            await asyncio.wait({flight.task})
        except asyncio.CancelledError:
            self._leave(flight)
            raise
        flight.waiting -= 1

    @staticmethod
    def _leave(flight: _Flight) -> None:
        """A caller stops waiting; the last one to go stops the run."""
        flight.waiting -= 1
        if flight.waiting == 0:
            flight.task.cancel()
