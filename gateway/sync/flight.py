"""One sync at a time per account in this process; late callers join the one running."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class SingleFlight:
    """Runs one coroutine per key at a time; callers arriving meanwhile share its outcome.

    Another process's sync of the same account is kept out by the account's Redis lease,
    which the coroutine takes itself.
    """

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[None]] = {}

    async def run(
        self, key: str, work: Callable[[], Awaitable[None]], *, fresh: bool = False
    ) -> None:
        """Run ``work`` for ``key`` unless a run is in flight, which is joined instead.

        ``fresh`` asks for a run that starts after the caller's own upstream changes, so it
        waits for one in flight and then runs its own instead of joining it.
        """
        running = self._running.get(key)
        if running is not None:
            try:
                await asyncio.shield(running)
                if not fresh:
                    return
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            except Exception:  # noqa: S110 - the other request reports its own failure
                pass
        task = asyncio.ensure_future(work())
        self._running[key] = task
        try:
            # Not shielded: if this request is cancelled, its connection is in doubt, so the
            # run on it stops too; requests that joined it then run their own.
            await task
        finally:
            if self._running.get(key) is task:
                del self._running[key]
