"""The CPU pool: large inputs leave the event loop's thread, small ones stay on it."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway import offload


def _thread() -> int:
    return threading.get_ident()


async def test_small_input_runs_on_the_loop_thread() -> None:
    assert await offload.sized(offload.INLINE_BELOW - 1, _thread) == threading.get_ident()


async def test_large_input_runs_in_a_worker_thread() -> None:
    assert await offload.sized(offload.INLINE_BELOW, _thread) != threading.get_ident()


async def test_the_loop_runs_while_a_worker_is_busy() -> None:
    release = threading.Event()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while not release.is_set():
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    work = asyncio.create_task(offload.off_loop(release.wait, 10))
    while ticks < 100:
        await asyncio.sleep(0)
    release.set()
    assert await work is True
    await ticker


async def test_a_cancelled_caller_stops_waiting() -> None:
    release = threading.Event()
    work = asyncio.create_task(offload.off_loop(release.wait, 10))
    await asyncio.sleep(0)
    work.cancel()
    with pytest.raises(asyncio.CancelledError):
        await work
    release.set()
