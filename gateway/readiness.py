"""Whether this process can do useful work: the check behind ``/readyz``.

Ready means Redis answers PING and the upstream IMAP server accepts a connection and greets
(nobody logs in: a probe has no credentials, and the greeting is what says the server is
serving). Orchestrators probe every few seconds from every node, so one check's result is
reused for ``cache_seconds`` and concurrent probes wait for the check already running instead
of starting their own: however many probes arrive, the upstream sees at most one connection
per ``cache_seconds``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.cache.store import STORE_UNAVAILABLE, Store
from gateway.imap.connection import Endpoint, greet
from gateway.imap.errors import ImapError

# Each dependency must answer within this many seconds; a probe's own timeout is longer.
CHECK_TIMEOUT_SECONDS = 2.0
_UNREACHABLE: tuple[type[Exception], ...] = (ImapError, OSError, *STORE_UNAVAILABLE)


@dataclass(frozen=True)
class Report:
    """The outcome of one check; each component is "ok", "timeout" or "unreachable"."""

    redis: str
    imap: str

    @property
    def ready(self) -> bool:
        return self.redis == "ok" and self.imap == "ok"

    def to_json(self) -> dict[str, object]:
        # No host names or error texts: /readyz answers anyone who can reach the port.
        return {
            "status": "ready" if self.ready else "unready",
            "checks": {"redis": self.redis, "imap": self.imap},
        }


class Readiness:
    """Runs the shared, cached check; one per process."""

    def __init__(
        self,
        store: Store,
        endpoint: Endpoint,
        cache_seconds: float,
        on_report: Callable[[Report], None] | None = None,
    ) -> None:
        self.store = store
        self.endpoint = endpoint
        self.cache_seconds = cache_seconds
        self.on_report = on_report
        self._last: Report | None = None
        self._checked_at = 0.0
        self._running: asyncio.Task[Report] | None = None

    async def report(self) -> Report:
        """The last result while fresh, else the result of the (one) check under way."""
        if self._last is not None and time.monotonic() - self._checked_at < self.cache_seconds:
            return self._last
        if self._running is None:
            self._running = asyncio.create_task(self._check(), name="readiness-check")
            # A check that fails unexpectedly fails its probes; if they all gave up meanwhile,
            # nobody else would look at the exception.
            self._running.add_done_callback(_seen)
        # shield: a probe that gives up must not cancel the check other probes wait for.
        return await asyncio.shield(self._running)

    async def _check(self) -> Report:
        try:
            redis, imap = await asyncio.gather(
                _outcome(self._ping_redis), _outcome(self._greet_imap)
            )
            report = Report(redis=redis, imap=imap)
            self._last = report
            self._checked_at = time.monotonic()
        finally:
            self._running = None
        if self.on_report is not None:
            self.on_report(report)
        return report

    async def _ping_redis(self) -> None:
        await self.store.ping()

    async def _greet_imap(self) -> None:
        await greet(self.endpoint)


def _seen(task: asyncio.Task[Report]) -> None:
    if not task.cancelled():
        task.exception()


async def _outcome(check: Callable[[], Awaitable[None]]) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await check()
    except TimeoutError:
        return "timeout"
    except _UNREACHABLE:
        return "unreachable"
    return "ok"
