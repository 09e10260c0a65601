"""Bringing one account's index up to date with the upstream: the one catch-up every reader
(a JMAP method, later a push watcher told that something moved) goes through.

Folders first (one LIST round trip tells what changed), then the messages of the folders whose
figures moved. Concurrent callers for one account share one run (gateway.sync.flight), and
the run borrows an upstream connection of its own: a caller that goes away leaves it to the
others, and a caller needs no connection at all when the index is trusted.

No caller waits longer than its patience (GATEWAY_SYNC_WAIT_SECONDS for requests). An
account's first indexing is shared work that may take minutes on a big mailbox: it runs to
its end whoever leaves, and a caller out of patience gets :class:`IndexingInProgress`. A later
catch-up that outlasts a caller's patience also goes on, and the caller reads the index as it
stands: every batch the writer committed is a consistent state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from gateway.cache.account import AccountIndex
from gateway.cache.freshness import FreshMarks
from gateway.cache.index_format import ensure_current, refuse_newer
from gateway.imap.connection import ImapConnection
from gateway.sync.emails import sync_emails
from gateway.sync.flight import SingleFlight
from gateway.sync.mailboxes import sync_mailboxes
from gateway.sync.reports import DeliveryReports

# How often a replica looks whether another's first indexing of an account has ended.
ELSEWHERE_POLL_SECONDS = 0.25

# Borrows a logged-in upstream connection of the account's user for the run.
Connect = Callable[[], AbstractAsyncContextManager[ImapConnection]]


class IndexingInProgress(Exception):
    """The account's first indexing goes on past the caller's patience (on this replica or
    on another that holds the account's lease)."""

    def __init__(self, indexed: int, expected: int | None) -> None:
        self.indexed = indexed
        self.expected = expected
        known = f" ({indexed:,} of about {expected:,} messages so far)" if expected else ""
        super().__init__(f"The account's first indexing is in progress{known}.")


class CatchUp:
    """Runs catch-ups, one at a time per account in this process (and across processes by
    the accounts' leases, which the syncs take)."""

    def __init__(
        self, interval: float, *, report_blob_id: Callable[[str], str] | None = None
    ) -> None:
        """``interval``: seconds a finished catch-up is trusted for (0: never).
        ``report_blob_id``: the blob id of a message by its email id, where the gateway sends
        mail (None: it does not, and delivery reports are not looked for)."""
        self._interval = interval
        self._report_blob_id = report_blob_id
        self._flight = SingleFlight()
        self._marks = FreshMarks()

    def waiting(self, account_id: str) -> int:
        """How many callers wait for the account's run in progress (0: none runs)."""
        return self._flight.waiting(account_id)

    async def run(
        self,
        index: AccountIndex,
        connect: Connect,
        *,
        fresh: bool = False,
        patience: float | None = None,
    ) -> bool:
        """The account's index up to date: caught up now, or by anyone within the interval.

        ``fresh`` always asks the upstream, in a run started after the call (see
        SingleFlight.run): a writer reads back its own changes, and waits for them whatever
        its ``patience`` once the account was indexed. ``patience``: seconds to wait (None:
        until done); past them the run goes on without the caller, which gets
        IndexingInProgress during the account's first indexing and returns otherwise.
        Returns whether a run finished for the caller (False: the index was trusted as it
        is, or the caller stopped waiting: a writer must then not plan on it as caught up).
        """
        if not fresh and self._interval and await self._marks.is_fresh(index.freshness):
            return False
        # Before any run or wait: an index a newer release wrote is not this one's to follow.
        await refuse_newer(index.emails)
        first = not await index.emails.indexed()
        if fresh and not first:
            patience = None
        if first and not self._flight.running(index.account_id):
            started = time.monotonic()
            elsewhere = await _indexed_elsewhere(index, patience)
            if elsewhere is False:
                raise IndexingInProgress(await index.emails.count(), await _expected(index))
            if elsewhere:
                # Another replica's run: this caller's writes were not read back by it.
                return False
            if patience is not None:
                patience = max(0.0, patience - (time.monotonic() - started))
        done = await self._flight.run(
            index.account_id,
            lambda: self._sync(index, connect),
            fresh=fresh,
            detach=first,
            patience=patience,
        )
        if not done and not await index.emails.indexed():
            raise IndexingInProgress(await index.emails.count(), await _expected(index))
        return done

    def distrust(self, account_id: str) -> None:
        """The next run for the account catches up whatever its mark said (a read met an
        index of an older format: gateway.cache.format_fence)."""
        self._marks.forget(account_id)

    async def stop(self) -> None:
        """Stop every run, first indexings included (shutdown). Folder marks are written
        at a run's end, so the next catch-up after an interrupted first indexing reads its
        folders again (the emails keep their ids)."""
        await self._flight.stop()

    async def _sync(self, index: AccountIndex, connect: Connect) -> None:
        # An index in an older layout is dropped first: this run then indexes afresh.
        await ensure_current(index.emails)
        async with connect() as conn:
            await sync_mailboxes(index.mailboxes, conn)
            reports = None
            if self._report_blob_id is not None:
                reports = DeliveryReports(index.submissions, self._report_blob_id)
            await sync_emails(index.emails, conn, index.mailboxes, reports)
        if self._interval:
            await self._marks.mark_fresh(index.freshness, self._interval)


async def _indexed_elsewhere(index: AccountIndex, patience: float | None) -> bool | None:
    """While another replica holds the account's email lease during its first indexing,
    wait for that indexing instead of borrowing an upstream connection to queue for the
    lease: True once it completed, False when ``patience`` ran out first, None when nobody
    holds the lease (this replica runs the indexing itself)."""
    store = index.emails
    deadline = None if patience is None else time.monotonic() + patience
    while await store.lease_held():
        if await store.indexed():
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        await asyncio.sleep(ELSEWHERE_POLL_SECONDS)
    return True if await store.indexed() else None


async def _expected(index: AccountIndex) -> int | None:
    """The messages the upstream's last listing counted in the account's folders (copies
    counted once per folder), or None before the first listing."""
    folders = [m for m in (await index.mailboxes.load()).values() if m.selectable]
    return sum(m.total for m in folders) or None
