"""Bringing one account's index up to date with the upstream: the one catch-up every reader
(a JMAP method, later a push watcher told that something moved) goes through.

Folders first (one LIST round trip tells what changed), then the messages of the folders whose
figures moved. Concurrent callers for one account share one run (gateway.sync.flight), and
the run borrows an upstream connection of its own: a caller that goes away leaves it to the
others, and a caller needs no connection at all when the index is trusted.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from gateway.cache.account import AccountIndex
from gateway.cache.freshness import FreshMarks
from gateway.imap.connection import ImapConnection
from gateway.sync.emails import sync_emails
from gateway.sync.flight import SingleFlight
from gateway.sync.mailboxes import sync_mailboxes
from gateway.sync.reports import DeliveryReports

# Borrows a logged-in upstream connection of the account's user for the run.
Connect = Callable[[], AbstractAsyncContextManager[ImapConnection]]


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

    async def run(self, index: AccountIndex, connect: Connect, *, fresh: bool = False) -> bool:
        """The account's index up to date: caught up now, or by anyone within the interval.

        ``fresh`` always asks the upstream, in a run started after the call (see
        SingleFlight.run): a writer reads back its own changes. Returns whether the upstream
        was asked (False: the index was trusted as it is).
        """
        if not fresh and self._interval and await self._marks.is_fresh(index.freshness):
            return False
        await self._flight.run(index.account_id, lambda: self._sync(index, connect), fresh=fresh)
        return True

    async def _sync(self, index: AccountIndex, connect: Connect) -> None:
        async with connect() as conn:
            await sync_mailboxes(index.mailboxes, conn)
            reports = None
            if self._report_blob_id is not None:
                reports = DeliveryReports(index.submissions, self._report_blob_id)
            await sync_emails(index.emails, conn, index.mailboxes, reports)
        if self._interval:
            await self._marks.mark_fresh(index.freshness, self._interval)
