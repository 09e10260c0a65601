"""SingleFlight: a run shared by the callers that arrive while it goes on, which outlives any
one of them that goes away, and stops once nobody waits for it.

Pure asyncio: the work is a coroutine that records how it ended; the sync over a real Dovecot
is tested in tests/test_disconnect.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from gateway.sync.flight import SingleFlight

KEY = "account"


@dataclass
class Work:
    """Work that waits for ``go``, and records each start and how each run ended."""

    go: asyncio.Event = field(default_factory=asyncio.Event)
    started: int = 0
    finished: int = 0
    cancelled: int = 0
    fail: bool = False

    async def __call__(self) -> None:
        self.started += 1
        try:
            await self.go.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.fail:
            self.fail = False
            raise RuntimeError("upstream trouble")
        self.finished += 1


async def until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until ``condition()`` holds."""
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0)


async def started_and_joined() -> tuple[SingleFlight, Work, asyncio.Task[None], asyncio.Task[None]]:
    """A run started by one caller and joined by another, both still waiting."""
    flight, work = SingleFlight(), Work()
    starter = asyncio.create_task(flight.run(KEY, work))
    await until(lambda: work.started == 1)
    joiner = asyncio.create_task(flight.run(KEY, work))
    await until(lambda: flight.waiting(KEY) == 2)
    return flight, work, starter, joiner


async def test_callers_arriving_meanwhile_share_one_run() -> None:
    flight, work = SingleFlight(), Work()
    callers = [asyncio.create_task(flight.run(KEY, work)) for _ in range(3)]
    await until(lambda: flight.waiting(KEY) == 3)
    work.go.set()
    await asyncio.gather(*callers)
    assert (work.started, work.finished) == (1, 1)
    assert flight.waiting(KEY) == 0


async def test_the_starter_going_away_leaves_the_run_to_those_who_joined() -> None:
    flight, work, starter, joiner = await started_and_joined()
    starter.cancel()
    # The run borrows its own upstream connection: the starter returns at once.
    with pytest.raises(asyncio.CancelledError):
        await starter
    assert flight.waiting(KEY) == 1
    work.go.set()
    await joiner
    assert (work.started, work.finished, work.cancelled) == (1, 1, 0)


async def test_a_run_nobody_waits_for_stops() -> None:
    flight, work, starter, joiner = await started_and_joined()
    joiner.cancel()
    starter.cancel()
    for caller in (starter, joiner):
        with pytest.raises(asyncio.CancelledError):
            await caller
    assert (work.started, work.finished, work.cancelled) == (1, 0, 1)
    assert flight.waiting(KEY) == 0


async def test_the_run_stops_when_the_last_caller_leaves_whoever_started_it() -> None:
    flight, work, starter, joiner = await started_and_joined()
    starter.cancel()
    await until(lambda: flight.waiting(KEY) == 1)
    joiner.cancel()
    for caller in (starter, joiner):
        with pytest.raises(asyncio.CancelledError):
            await caller
    assert (work.started, work.cancelled) == (1, 1)


async def test_a_caller_arriving_after_the_starter_left_joins_the_run_still_going() -> None:
    flight, work, starter, joiner = await started_and_joined()
    starter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starter
    late = asyncio.create_task(flight.run(KEY, work))
    await until(lambda: flight.waiting(KEY) == 2)
    work.go.set()
    await asyncio.gather(joiner, late)
    assert (work.started, work.finished) == (1, 1)
    assert flight.waiting(KEY) == 0


async def test_a_failed_run_fails_its_starter_and_the_joiner_runs_its_own() -> None:
    flight, work = SingleFlight(), Work(fail=True)
    starter = asyncio.create_task(flight.run(KEY, work))
    await until(lambda: work.started == 1)
    joiner = asyncio.create_task(flight.run(KEY, work))
    await until(lambda: flight.waiting(KEY) == 2)
    work.go.set()
    with pytest.raises(RuntimeError):
        await starter
    await joiner
    assert (work.started, work.finished) == (2, 1)


async def test_fresh_waits_for_the_run_in_flight_then_runs_its_own() -> None:
    flight, work = SingleFlight(), Work()
    first = asyncio.create_task(flight.run(KEY, work))
    await until(lambda: work.started == 1)
    fresh = asyncio.create_task(flight.run(KEY, work, fresh=True))
    await until(lambda: flight.waiting(KEY) == 2)
    work.go.set()
    await asyncio.gather(first, fresh)
    assert (work.started, work.finished) == (2, 2)


async def test_fresh_callers_share_a_run_that_started_after_both_arrived() -> None:
    flight, work = SingleFlight(), Work()
    first = asyncio.create_task(flight.run(KEY, work))
    await until(lambda: work.started == 1)
    fresh = [asyncio.create_task(flight.run(KEY, work, fresh=True)) for _ in range(2)]
    await until(lambda: flight.waiting(KEY) == 3)
    work.go.set()
    await asyncio.gather(first, *fresh)
    assert (work.started, work.finished) == (2, 2)


async def test_keys_run_apart() -> None:
    flight, work = SingleFlight(), Work()
    runs = [asyncio.create_task(flight.run(key, work)) for key in ("a", "b")]
    await until(lambda: work.started == 2)
    work.go.set()
    await asyncio.gather(*runs)
    assert work.finished == 2
