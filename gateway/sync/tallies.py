"""Thread membership and Mailbox counts, kept up to date change by change (RFC 8621 2).

Counting on read would mean reading every email of the account for each Mailbox/get; instead
every batch the index writer applies turns into deltas:

* per mailbox, ``totalEmails`` and ``unreadEmails`` (neither ``$seen`` nor ``$draft``);
* per thread, its members (oldest first), how many of them each mailbox holds, and how many
  are unread; from which, per mailbox, ``totalThreads`` (threads with an email in it) and
  ``unreadThreads`` (those threads with an unread email anywhere in them, as RFC 8621 2
  recommends: opening the thread would show it).

Pure functions over plain data; the index writer reads and writes Redis around them.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.cache.emails import ThreadStats

# Kinds of a mailbox's counters, as the index keeps them (gateway.cache.mailboxes).
TOTAL_EMAILS = "e"
UNREAD_EMAILS = "u"
TOTAL_THREADS = "t"
UNREAD_THREADS = "r"
KINDS = (TOTAL_EMAILS, UNREAD_EMAILS, TOTAL_THREADS, UNREAD_THREADS)


@dataclass(frozen=True, slots=True)
class Presence:
    """What one visible email adds to the counts."""

    mailboxes: tuple[str, ...]
    unread: bool  # RFC 8621 2: counted as unread (neither $seen nor $draft)
    # What the query structures follow (gateway.cache.query_index): $seen and $flagged.
    seen: bool
    flagged: bool

    @classmethod
    def of(cls, view: tuple[Any, ...] | None) -> Presence | None:
        """From an EmailRecord.view(): (mailbox ids, lower-cased flags), or None."""
        if view is None:
            return None
        mailboxes, flags = view
        seen = "\\seen" in flags
        return cls(
            tuple(mailboxes), not seen and "\\draft" not in flags, seen, "\\flagged" in flags
        )


@dataclass(frozen=True, slots=True)
class Move:
    """One email's change of presence, as a batch saw it."""

    email_id: str
    thread_id: str
    received_at: int
    before: Presence | None
    after: Presence | None
    size: int  # for the folders' size orders (gateway.cache.query_index)


@dataclass
class Outcome:
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (mailbox id, kind)
    threads: dict[str, ThreadStats] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)

    @property
    def mailboxes(self) -> set[str]:
        """Mailboxes whose counts changed."""
        return {mailbox_id for (mailbox_id, _), delta in self.counts.items() if delta}


def apply(moves: Iterable[Move], threads: dict[str, ThreadStats]) -> Outcome:
    """The new thread records and the count deltas after ``moves``.

    ``threads`` holds the current record of every thread the moves touch.
    """
    outcome = Outcome()
    before = {t: (stats.email_ids(), stats.shown_in()) for t, stats in threads.items()}
    for move in moves:
        stats = threads[move.thread_id]
        for presence, sign in ((move.before, -1), (move.after, 1)):
            if presence is None:
                continue
            for mailbox_id in presence.mailboxes:
                outcome.counts[mailbox_id, TOTAL_EMAILS] += sign
                if presence.unread:
                    outcome.counts[mailbox_id, UNREAD_EMAILS] += sign
                stats.mailboxes[mailbox_id] = stats.mailboxes.get(mailbox_id, 0) + sign
                if stats.mailboxes[mailbox_id] <= 0:
                    del stats.mailboxes[mailbox_id]
            stats.unread += sign if presence.unread else 0
        if move.before is None and move.after is not None:
            bisect.insort(stats.members, [move.received_at, move.email_id])
        elif move.before is not None and move.after is None:
            stats.members = [m for m in stats.members if m[1] != move.email_id]
    for thread_id, stats in threads.items():
        old_ids, (old_total, old_unread) = before[thread_id]
        new_total, new_unread = stats.shown_in()
        for mailbox_id in old_total | new_total:
            delta = (mailbox_id in new_total) - (mailbox_id in old_total)
            outcome.counts[mailbox_id, TOTAL_THREADS] += delta
        for mailbox_id in old_unread | new_unread:
            delta = (mailbox_id in new_unread) - (mailbox_id in old_unread)
            outcome.counts[mailbox_id, UNREAD_THREADS] += delta
        new_ids = stats.email_ids()
        if old_ids == new_ids:
            pass
        elif not old_ids:
            outcome.created.append(thread_id)
        elif not new_ids:
            outcome.destroyed.append(thread_id)
        else:
            outcome.updated.append(thread_id)
    outcome.threads = threads
    return outcome
