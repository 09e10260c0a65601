"""The longest time the event loop went without running a waiting task.

The tests serve the gateway on the test's own event loop, so a parse that keeps the loop
is seen here exactly as another user's request would see it: as the time a task that asked
to run again at once had to wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass
class LoopStall:
    worst: float = 0.0
    ticks: int = 0


@asynccontextmanager
async def measured_stall(period: float = 0.005) -> AsyncIterator[LoopStall]:
    """Tick every ``period`` seconds while the block runs; ``worst`` is the longest wait
    beyond the period."""
    stall = LoopStall()
    done = asyncio.Event()

    async def tick() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(period)
            stall.worst = max(stall.worst, time.perf_counter() - started - period)
            stall.ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        yield stall
    finally:
        done.set()
        await ticker
