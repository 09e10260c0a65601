"""One sync at a time per account in this process; late callers join the one running."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Seconds :meth:`SingleFlight.stop` waits for cancelled runs to unwind (a lease to release).
STOP_SECONDS = 5.0


@dataclass(eq=False)
class _Flight:
    """A run in progress and how many callers still wait for it (its starter included)."""

    task: asyncio.Task[None]
    waiting: int = 1
    # Runs to its end whoever leaves: shared work started for everyone (an account's first
    # indexing), or a run whose callers stopped waiting without going away (patience).
    detached: bool = False


class SingleFlight:
    """Runs one coroutine per key at a time; callers arriving meanwhile share its outcome.

    The run is a task of its own that takes what it needs itself (the catch-up borrows its own
    upstream connection), so a caller that goes away (its client disconnected) returns at once
    and does not take the run down while others wait for it; once nobody waits, it is
    cancelled, unless it is detached: started with ``detach`` or outwaited by its callers'
    ``patience``. Only :meth:`stop` (shutdown) ends a detached run early.

    Another process's sync of the same account is kept out by the account's Redis lease,
    which the coroutine takes itself.
    """

    def __init__(self) -> None:
        self._running: dict[str, _Flight] = {}
        self._closed = False

    def running(self, key: str) -> bool:
        """Whether a run of ``key`` is in progress here (detached ones too, waited for or not)."""
        return self._current(key) is not None

    def waiting(self, key: str) -> int:
        """How many callers wait for the run of ``key`` in progress (0: none runs)."""
        flight = self._current(key)
        return flight.waiting if flight is not None else 0

    async def run(
        self,
        key: str,
        work: Callable[[], Awaitable[None]],
        *,
        fresh: bool = False,
        detach: bool = False,
        patience: float | None = None,
    ) -> bool:
        """Run ``work`` for ``key`` unless a run is in flight, which is joined instead.

        ``fresh`` asks for a run that starts after the caller's own upstream changes: one in
        flight on arrival is waited for but does not count, one started since does. A run that
        failed or was cancelled does not count either; the caller then runs its own (and the
        request that started the failed one reports its failure).

        ``detach``: a run this call starts goes on when every caller has left. ``patience``:
        seconds this caller waits in all; past them it stops waiting, the run goes on (it is
        detached) and False is returned. True: a run that counts for the caller completed.
        """
        # After stop() (shutdown), nothing is left running without a caller to wait for it.
        detach = detach and not self._closed
        deadline = None if patience is None else time.monotonic() + patience
        stale = self._current(key) if fresh else None
        while (flight := self._current(key)) is not None:
            if detach:
                flight.detached = True
            done = await self._join(flight, deadline)
            if done is None:
                return False
            if done and flight is not stale:
                return True
        flight = _Flight(asyncio.ensure_future(work()), detached=detach)
        self._running[key] = flight
        flight.task.add_done_callback(lambda _: self._ended(key, flight))
        if not await self._wait(flight, deadline):
            return False
        flight.task.result()
        return True

    async def stop(self) -> None:
        """Cancel every run, detached ones included, and wait for them to end (shutdown);
        runs started later (requests still draining) end with their callers."""
        self._closed = True
        tasks = [f.task for f in self._running.values() if not f.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_SECONDS)

    def _current(self, key: str) -> _Flight | None:
        flight = self._running.get(key)
        return flight if flight is not None and not flight.task.done() else None

    def _ended(self, key: str, flight: _Flight) -> None:
        """The run is over, whoever still waits: late callers start a new one."""
        if self._running.get(key) is flight:
            del self._running[key]
        if flight.task.cancelled():
            return
        # Retrieved, so never logged by asyncio: a failure is the waiters' to report, if any
        # remain; a detached run nobody waits for any more reports its own.
        exc = flight.task.exception()
        if exc is not None and flight.waiting == 0:
            log.warning("sync of %s failed with nobody waiting: %r", key, exc)

    async def _join(self, flight: _Flight, deadline: float | None) -> bool | None:
        """Wait for ``flight``: True if it succeeded, None if the deadline came first."""
        flight.waiting += 1
        if not await self._wait(flight, deadline):
            return None
        return not flight.task.cancelled() and flight.task.exception() is None

    async def _wait(self, flight: _Flight, deadline: float | None) -> bool:
        """Wait for the run to end (True) or the deadline (False), then stop counting as its
        waiter; a caller cancelled meanwhile leaves it (see _leave)."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            done, _ = await asyncio.wait({flight.task}, timeout=timeout)
        except asyncio.CancelledError:
            self._leave(flight)
            raise
        flight.waiting -= 1
        if not done:
            # Out of patience, not gone: the run is not the caller's to stop.
            flight.detached = True
        return bool(done)

    @staticmethod
    def _leave(flight: _Flight) -> None:
        """A caller stops waiting; the last one to go stops the run unless it is detached."""
        flight.waiting -= 1
        if flight.waiting == 0 and not flight.detached:
            flight.task.cancel()
