"""Commits in, pending pushes out: the journal listener that feeds push subscriptions.

Every state change committed in this process (a client's /set, a watcher's catch-up) reaches
:meth:`Enqueuer._committed` through the journal (cache/journal.py), synchronously, in the
writer's call stack. It only merges the states into a bounded outbox (per account, the newest
state per type) and wakes one task, which hands each account's states to
``PushSubscriptions.enqueue_changes`` (one script per account: merged into every verified
subscription's pending StateChange, due after COALESCE_SECONDS, or after the subscription's
throttle) and tells the local delivery worker when to look.

Only the process that committed a change enqueues it, so however many replicas run, a change
becomes one pending push per subscription, never one per replica. A replica that dies between
the commit and the enqueue loses that push (the client hears of the change with the next one):
the same window the hub's announcements have.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from gateway.cache.journal import StateChange, listening
from gateway.cache.push_subscriptions import PushSubscriptions
from gateway.cache.store import STORE_UNAVAILABLE
from gateway.metrics import Metrics
from gateway.push import TypeStates
from gateway.push.states import newer

log = logging.getLogger(__name__)

# How long a change waits for others before it is pushed: the changes of one Email/set, or of
# one catch-up's folders, go out as one push. Short: a push should leave well within 2 s.
COALESCE_SECONDS = 0.25
# Accounts whose states wait in the outbox. Past it (Redis slower than the writers for long)
# the oldest account's states are dropped and counted; its subscriptions hear of them with its
# next change.
MAX_OUTBOX = 10_000
# Accounts enqueued at once (one script each).
CONCURRENCY = 16
# On stop, how long the changes committed last still get to be enqueued.
FLUSH_SECONDS = 2.0


class Enqueuer:
    """The process's journal listener for push subscriptions (see the module docstring).

    ``wake(seconds)`` is told, after an account's changes were scheduled, when they fall due:
    the delivery worker looks then rather than at its next poll.
    """

    def __init__(
        self,
        store: PushSubscriptions,
        metrics: Metrics,
        wake: Callable[[float], None],
        *,
        min_interval_seconds: float,
        coalesce_seconds: float = COALESCE_SECONDS,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._wake = wake
        self._min_interval_ms = round(min_interval_seconds * 1000)
        self._delay = coalesce_seconds
        self._outbox: dict[str, TypeStates] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._journal = contextlib.ExitStack()

    def start(self) -> None:
        self._journal.enter_context(listening(self._committed))
        self._task = asyncio.create_task(self._run(), name="push-enqueuer")

    async def stop(self) -> None:
        """Stop hearing commits; enqueue what waits, for at most FLUSH_SECONDS."""
        self._journal.close()
        self._stopping = True
        self._ready.set()
        if self._task is None:
            return
        # asyncio.wait, not wait_for: a cancellation of stop() itself must not be swallowed.
        await asyncio.wait({self._task}, timeout=FLUSH_SECONDS)
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def _committed(self, account_id: str, changes: Sequence[StateChange]) -> None:
        """The journal's listener: in the writer's call stack, so it never awaits or raises."""
        try:
            states = self._outbox.get(account_id)
            if states is None:
                if len(self._outbox) >= MAX_OUTBOX:
                    del self._outbox[next(iter(self._outbox))]
                    self._metrics.webpush_enqueue_failed()
                states = self._outbox[account_id] = {}
            for change in changes:
                old = states.get(change.data_type)
                if old is None or newer(old, change.state):
                    states[change.data_type] = change.state
            self._ready.set()
        except Exception:
            log.exception("push subscriptions: a committed change could not be queued")

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            batch, self._outbox = self._outbox, {}
            items = list(batch.items())
            for start in range(0, len(items), CONCURRENCY):
                await asyncio.gather(
                    *(self._enqueue(a, states) for a, states in items[start : start + CONCURRENCY])
                )
            if self._stopping and not self._outbox:
                return

    async def _enqueue(self, account_id: str, states: TypeStates) -> None:
        try:
            scheduled = await self._store.enqueue_changes(
                account_id,
                states,
                now_ms=int(time.time() * 1000),
                delay_ms=round(self._delay * 1000),
                min_interval_ms=self._min_interval_ms,
            )
        except STORE_UNAVAILABLE as exc:
            log.warning("push subscriptions: changes not enqueued: %s", type(exc).__name__)
            self._metrics.webpush_enqueue_failed()
            return
        except Exception:
            log.exception("push subscriptions: changes not enqueued")
            self._metrics.webpush_enqueue_failed()
            return
        if scheduled:
            self._wake(self._delay)
