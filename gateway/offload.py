"""CPU-heavy work on data a stranger wrote, run beside the event loop instead of on it.

The gateway is one event loop serving every user: a parse that takes a second there stalls
every other request, health probes included, for that second. Work whose cost grows with an
untrusted input (a message's MIME tree, an uploaded blob) goes to a small pool of threads
once the input is large enough for it to matter. The loop then keeps running: CPython hands
the interpreter back to it every switch interval (5 ms by default) while a worker runs pure
Python code. That does not help against one long call into C that keeps the interpreter (a
regular expression over megabytes, say), so such calls still need bounds on their input.

Small inputs run inline: a thread hop costs tens of microseconds, more than parsing a
typical message header.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# Inputs below this many octets are handled on the loop: parsing them takes well under a
# millisecond, less than the hand-over to a thread.
INLINE_BELOW = 64 * 1024
# Two workers: heavy parses of several users proceed side by side without taking every core
# of a replica away from the loop.
WORKERS = 2

_executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="jg-cpu")


async def off_loop(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``func`` in the CPU pool and wait for it without blocking the loop.

    A cancelled caller stops waiting at once; the worker finishes its call and its result is
    dropped (a thread cannot be interrupted), which the input bounds keep short.
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, functools.partial(func, *args, **kwargs))


async def sized(size: int, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``func(*args)`` inline when its input of ``size`` octets is small, else :func:`off_loop`."""
    if size < INLINE_BELOW:
        return func(*args, **kwargs)
    return await off_loop(func, *args, **kwargs)
