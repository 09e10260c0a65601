"""SingleFlight's detached runs and patience: an account's first indexing outlives every
caller that leaves, a caller out of patience leaves any run going, and only stop() (shutdown)
ends them. Pure asyncio, with the recording work of tests/sync/test_flight.py."""

from __future__ import annotations

import asyncio

from gateway.sync.flight import SingleFlight
from tests.sync.test_flight import KEY, Work, until


async def test_a_detached_run_outlives_its_callers_going_away() -> None:
    flight, work = SingleFlight(), Work()
    starter = asyncio.create_task(flight.run(KEY, work, detach=True))
    await until(lambda: work.started == 1)
    joiner = asyncio.create_task(flight.run(KEY, work))
    await until(lambda: flight.waiting(KEY) == 2)
    starter.cancel()
    joiner.cancel()
    await asyncio.gather(starter, joiner, return_exceptions=True)
    assert flight.waiting(KEY) == 0 and work.cancelled == 0
    work.go.set()
    await until(lambda: work.finished == 1)
    assert work.started == 1


async def test_a_caller_out_of_patience_leaves_the_run_going() -> None:
    flight, work = SingleFlight(), Work()
    # Not detached: only a caller that goes away may stop a run, not one that stops waiting.
    assert await flight.run(KEY, work, patience=0.01) is False
    assert work.started == 1 and work.cancelled == 0
    # A later caller joins the run still going and sees it end.
    later = asyncio.create_task(flight.run(KEY, work, patience=60))
    await until(lambda: flight.waiting(KEY) == 1)
    work.go.set()
    assert await later is True
    assert (work.started, work.finished) == (1, 1)


async def test_joining_with_detach_detaches_the_run() -> None:
    flight, work = SingleFlight(), Work()
    starter = asyncio.create_task(flight.run(KEY, work))
    await until(lambda: work.started == 1)
    joiner = asyncio.create_task(flight.run(KEY, work, detach=True))
    await until(lambda: flight.waiting(KEY) == 2)
    for task in (starter, joiner):
        task.cancel()
    await asyncio.gather(starter, joiner, return_exceptions=True)
    assert work.cancelled == 0
    work.go.set()
    await until(lambda: work.finished == 1)


async def test_stop_ends_detached_runs() -> None:
    flight, work = SingleFlight(), Work()
    assert await flight.run(KEY, work, detach=True, patience=0) is False
    assert flight.waiting(KEY) == 0 and work.started == 1
    await flight.stop()
    assert work.cancelled == 1
    # The next caller starts a run of its own.
    work.go.set()
    assert await flight.run(KEY, work) is True
    assert work.started == 2 and work.finished == 1


async def test_a_run_without_patience_or_detach_still_stops_when_nobody_waits() -> None:
    flight, work = SingleFlight(), Work()
    caller = asyncio.create_task(flight.run(KEY, work))
    await until(lambda: work.started == 1)
    caller.cancel()
    await asyncio.gather(caller, return_exceptions=True)
    await until(lambda: work.cancelled == 1)


async def test_after_stop_a_run_ends_with_its_callers_even_when_asked_to_detach() -> None:
    flight, work = SingleFlight(), Work()
    await flight.stop()
    caller = asyncio.create_task(flight.run(KEY, work, detach=True))
    await until(lambda: work.started == 1)
    caller.cancel()
    await asyncio.gather(caller, return_exceptions=True)
    await until(lambda: work.cancelled == 1)
