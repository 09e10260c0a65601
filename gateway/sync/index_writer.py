"""Applies what a sync learnt to the email index and logs it as Email and Thread changes.

Work arrives in batches (a page of new messages, the flag changes of a folder, expunges) and
each batch is written in one transaction together with its change log entries, so memory stays
flat however large the first sync of a folder is, and the index never disagrees with the
states it hands out.

Expunges are applied last, after every folder's new messages: a message moved from a folder
visited first to one visited later is then seen in both for a moment, never in neither, so
the move is an update of one Email and not a destroy and a create (RFC 8621 4: the id
survives a move).

A first sync's pages may leave their script running (``add_copies(..., ahead=True)``) while
the caller parses the next page: Redis applies page k while Python reads page k+1. At most
one script is in flight, and every later read or write of the writer waits for it first
(:meth:`IndexWriter.settle`), so the order of writes, and what each read sees, are as if
every script had been awaited at once; the lease fence is the script's own, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.cache.emails import (
    EMAIL,
    INDEXED_FIELD,
    THREAD,
    EmailRecord,
    EmailStore,
    FolderMark,
)
from gateway.cache.index_batch import IndexBatch, index_batch
from gateway.cache.journal import StateChange
from gateway.cache.locks import Lease
from gateway.cache.mailboxes import MAILBOX
from gateway.sync.tallies import KINDS, Move, Outcome, Presence, apply

# Uid map entries of an earlier UIDVALIDITY copied per script (see IndexWriter.start_over).
OLD_UIDS_PART = 5000


@dataclass(frozen=True, slots=True)
class NewCopy:
    """A message found in a folder, with what its record needs if the email is new."""

    uid: int
    email_id: str
    flags: list[str]
    received_at: int
    size: int
    thread_id: str


@dataclass(slots=True)
class _Touched:
    record: EmailRecord
    before: tuple[Any, ...] | None
    existed: bool


@dataclass(slots=True)
class _Batch:
    touched: dict[str, _Touched] = field(default_factory=dict)
    uid_sets: dict[str, dict[int, str]] = field(default_factory=dict)
    uid_dels: dict[str, list[int]] = field(default_factory=dict)
    refs: dict[bytes, str] = field(default_factory=dict)
    subjects: dict[str, str] = field(default_factory=dict)


class IndexWriter:
    """One sync's writes; call :meth:`finish` once every folder was visited."""

    def __init__(
        self,
        store: EmailStore,
        held: Lease | None = None,
        *,
        own_threads: bool = False,
        initial: bool = False,
    ) -> None:
        """``held``: the account's sync lease; every write commits only while it is held.
        ``own_threads``: threads are the gateway's (no THREADID): their Message-ID map is
        kept with them (gateway.cache.thread_links).
        ``initial``: the account's email index was never complete (EmailStore.indexed): no
        client can hold a state to ask changes from, so no per-id Email/Thread change log is
        written; states still move per batch, and finish() marks the index complete."""
        self.store = store
        self._held = held
        self._initial = initial
        # Threads are the gateway's: their links (record counts, Message-ID keys) are kept.
        self._own_threads = own_threads
        # (mailbox id, uid) -> email id, applied by finish()
        self._removals: dict[tuple[str, int], str] = {}
        # Folders whose uid map was deleted as a whole: no per-uid deletes for them.
        self._whole: set[str] = set()
        self._marks: dict[str, FolderMark] = {}
        self._dropped: list[str] = []
        self._emptied: list[str] = []
        # Folders gone upstream: their counts are deleted, not logged as Mailbox updates.
        self._whole_gone: set[str] = set()
        # The states this writer's commits moved, in order (gateway.cache.journal).
        self.changes: list[StateChange] = []
        # The one script add_copies(ahead=True) left running, if any (see settle).
        self._pending: asyncio.Future[None] | None = None

    async def add_copies(
        self,
        mailbox_id: str,
        copies: Iterable[NewCopy],
        refs: dict[bytes, str] | None = None,
        subjects: dict[str, str] | None = None,
        *,
        ahead: bool = False,
    ) -> list[str]:
        """Messages found in a folder: new emails, or new copies of known ones. Returns the
        ids of the new emails (a copy of a known one, moved or copied here, is not new).

        ``refs`` and ``subjects`` are the thread mappings the batch's threading made; they are
        written in the same transaction as the emails that depend on them.

        ``ahead``: return once the batch's script is sent, not applied; the writer's next
        call, or :meth:`settle`, waits for it (and raises its error, LeaseLost included).
        Whoever reads the index meanwhile, outside this writer, must settle first.
        """
        await self.settle()
        items = list(copies)
        batch = _Batch(refs=refs or {}, subjects=subjects or {})
        await self._load(batch, (c.email_id for c in items))
        touched_ids = batch.touched
        uid_set = batch.uid_sets.setdefault(mailbox_id, {})
        removals = self._removals
        for copy in items:
            touched = touched_ids.get(copy.email_id)
            if touched is None:
                # A new email (nearly every one of a first sync): its record made whole.
                held = {mailbox_id: {copy.uid: list(copy.flags)}}
                record = EmailRecord(
                    copy.email_id, copy.thread_id, copy.received_at, copy.size, held
                )
                touched_ids[copy.email_id] = _Touched(record, None, False)
            else:
                touched.record.copies.setdefault(mailbox_id, {})[copy.uid] = list(copy.flags)
            uid_set[copy.uid] = copy.email_id
            # A message found again at the same place is not the one to remove later.
            if removals and removals.get((mailbox_id, copy.uid)) == copy.email_id:
                del removals[(mailbox_id, copy.uid)]
        if not uid_set:
            del batch.uid_sets[mailbox_id]
        return await self._write(batch, ahead=ahead)

    async def settle(self) -> None:
        """Wait for the script an ``ahead`` call left running; its error is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending

    async def abandon(self) -> None:
        """Stop waiting for a script left running (the caller failed): it is cancelled, or
        ends as it would have, and its outcome is dropped. A batch is all or nothing, so
        the index holds it whole or not at all, as after any interrupted commit."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending

    async def set_flags(
        self, mailbox_id: str, flags: dict[int, list[str]], mark: FolderMark | None = None
    ) -> None:
        """Flag changes of known copies; uids the index does not know are ignored.
        ``mark``: the folder's new mark, written in the same transaction (Email/set's, once
        the upstream confirmed its STOREs were the folder's only change)."""
        await self.settle()
        owners = await self.store.email_ids_of(mailbox_id, flags)
        batch = _Batch()
        await self._load(batch, owners.values())
        for uid, email_id in owners.items():
            touched = batch.touched.get(email_id)
            copies = touched.record.copies.get(mailbox_id) if touched is not None else None
            if copies is not None and uid in copies:
                copies[uid] = list(flags[uid])
        await self._write(batch, marks={mailbox_id: mark} if mark is not None else None)

    def remove_later(self, mailbox_id: str, owners: dict[int, str]) -> None:
        """Copies expunged from a folder."""
        for uid, email_id in owners.items():
            self._removals[(mailbox_id, uid)] = email_id

    async def start_over(self, mailbox_id: str) -> None:
        """A folder indexed from scratch (new, or its UIDVALIDITY changed): the copies it
        held go, its uid map is refilled.

        Until finish() has removed those copies, the old map stays in Redis apart from the
        new one: a sync interrupted half way finds it again and removes what it lists, so no
        copy of an earlier UIDVALIDITY outlives the interruption.
        """
        await self.settle()
        old = (await self.store.held_uids([mailbox_id]))[mailbox_id]
        self._retire(mailbox_id, old)
        # The old map is copied in parts, so no one script carries a large folder's map (a
        # resumed first indexing of 100,000 messages would be 200,000 arguments, stalling
        # Redis); the current map goes only with the last part, so an interruption between
        # parts leaves both maps, which the next visit merges again.
        owners = list(old.items())
        for start in range(0, len(owners), OLD_UIDS_PART):
            async with index_batch(self.store, self._held, initial=self._initial) as batch:
                batch.keep_old_uids(mailbox_id, dict(owners[start : start + OLD_UIDS_PART]))
        async with index_batch(self.store, self._held, initial=self._initial) as batch:
            batch.drop_uid_map(mailbox_id)

    def empty_folder(self, mailbox_id: str, old: dict[int, str], mark: FolderMark) -> None:
        """A folder the upstream shows empty (``old``: what it held): its copies go."""
        self._retire(mailbox_id, old)
        self._emptied.append(mailbox_id)
        self._marks[mailbox_id] = mark

    def forget_folder(self, mailbox_id: str, old: dict[int, str]) -> None:
        """A folder that no longer exists (or can no longer be selected)."""
        self._retire(mailbox_id, old)
        self._dropped.append(mailbox_id)
        self._whole_gone.add(mailbox_id)

    def _retire(self, mailbox_id: str, old: dict[int, str]) -> None:
        self.remove_later(mailbox_id, old)
        self._whole.add(mailbox_id)

    def mark(self, mailbox_id: str, mark: FolderMark) -> None:
        self._marks[mailbox_id] = mark

    async def finish(self, chunk: int = 1000) -> None:
        """Apply the expunges, then record how far each folder was followed; an initial
        writer's last script also marks the index complete (EmailStore.indexed)."""
        await self.settle()
        removals = list(self._removals.items())
        for start in range(0, len(removals), chunk):
            part = removals[start : start + chunk]
            batch = _Batch()
            await self._load(batch, (email_id for _, email_id in part))
            for (mailbox_id, uid), email_id in part:
                touched = batch.touched.get(email_id)
                if touched is not None:
                    uids = touched.record.copies.get(mailbox_id, {})
                    uids.pop(uid, None)
                    if not uids:
                        touched.record.copies.pop(mailbox_id, None)
                if mailbox_id not in self._whole:
                    batch.uid_dels.setdefault(mailbox_id, []).append(uid)
            await self._write(batch)
        async with index_batch(self.store, self._held, initial=self._initial) as folders:
            for mailbox_id in self._whole:
                folders.drop_old_uids(mailbox_id)
            for mailbox_id in self._emptied:
                folders.drop_uid_map(mailbox_id)
            for mailbox_id in self._dropped:
                folders.forget_folder(mailbox_id, KINDS)
            folders.set_marks(self._marks)
            if self._initial:
                folders.mark_indexed(INDEXED_FIELD)

    # -- internals -------------------------------------------------------------------------

    async def _load(self, batch: _Batch, ids: Iterable[str]) -> None:
        wanted = [i for i in dict.fromkeys(ids) if i not in batch.touched]
        for email_id, record in (await self.store.records(wanted)).items():
            batch.touched[email_id] = _Touched(record, record.view(), True)

    async def _write(
        self,
        batch: _Batch,
        *,
        ahead: bool = False,
        marks: dict[str, FolderMark] | None = None,
    ) -> list[str]:
        """One transaction: records, uid maps, threads, counts, thread mappings, change logs,
        and ``marks`` when given. Returns the ids of the emails it created; ``ahead``: see
        add_copies."""
        created: list[str] = []
        updated: list[str] = []
        destroyed: list[str] = []
        moves: list[Move] = []
        for email_id, touched in batch.touched.items():
            after = touched.record.view()
            if touched.before == after:
                continue
            if touched.before is None:
                created.append(email_id)
            elif after is None:
                destroyed.append(email_id)
            else:
                updated.append(email_id)
            record = touched.record
            moves.append(
                Move(
                    email_id,
                    record.thread_id,
                    record.received_at,
                    Presence.of(touched.before),
                    Presence.of(after),
                    record.size,
                )
            )
        # The threads' records, and the record counts of the threads whose links change (those
        # the batch changes or maps keys to): one script.
        delta = _links_delta(batch) if self._own_threads else Counter()
        linked = {t for t, n in delta.items() if n} | set(batch.refs.values())
        threads, known = await self.store.threads_and_links(
            {m.thread_id for m in moves}, linked if self._own_threads else ()
        )
        links = None
        if self._own_threads:
            counts = {t: known.get(t, 0) + delta.get(t, 0) for t in linked}
            links = _LinkChanges(counts, {t for t, n in counts.items() if n <= 0})
        outcome = apply(moves, threads)
        emails = (created, updated, destroyed)
        commit = self._commit(batch, moves, outcome, links, emails, marks or {})
        if ahead:
            self._pending = asyncio.ensure_future(commit)
        else:
            await commit
        return created

    async def _commit(
        self,
        batch: _Batch,
        moves: list[Move],
        outcome: Outcome,
        links: _LinkChanges | None,
        emails: tuple[list[str], list[str], list[str]],
        marks: dict[str, FolderMark],
    ) -> None:
        created, updated, destroyed = emails
        async with index_batch(self.store, self._held, initial=self._initial) as write:
            write.set_marks(marks)
            write.put_records(t.record for t in batch.touched.values() if t.record.copies)
            write.drop_records(
                i for i, t in batch.touched.items() if not t.record.copies and t.existed
            )
            for mailbox_id, uid_map in batch.uid_sets.items():
                write.map_uids(mailbox_id, uid_map)
            for mailbox_id, uids in batch.uid_dels.items():
                write.unmap_uids(mailbox_id, uids)
            write.put_threads({t: s for t, s in outcome.threads.items() if s.members})
            write.drop_threads(t for t, s in outcome.threads.items() if not s.members)
            _date_index(write, moves)
            write.follow_queries(moves)
            write.add_counts(outcome.counts)
            write.map_thread_refs(batch.refs, batch.subjects)
            if links is not None:
                write.link_threads(links.counts, batch.refs, links.emptied)
            write.log(EMAIL, created=created, updated=updated, destroyed=destroyed)
            write.log(
                THREAD,
                created=outcome.created,
                updated=outcome.updated,
                destroyed=outcome.destroyed,
            )
            # RFC 8621 2.2: counts changed alone are a Mailbox update with updatedProperties.
            write.log(MAILBOX, minor=sorted(outcome.mailboxes - self._whole_gone))
        self.changes += write.changes


@dataclass(slots=True)
class _LinkChanges:
    counts: dict[str, int]  # thread id -> its email records after the batch
    emptied: set[str]  # threads left without records


def _links_delta(batch: _Batch) -> Counter[str]:
    """Email records each thread gains (and loses, negative) in a batch."""
    delta: Counter[str] = Counter()
    for touched in batch.touched.values():
        if not touched.existed and touched.record.copies:
            delta[touched.record.thread_id] += 1
        elif touched.existed and not touched.record.copies:
            delta[touched.record.thread_id] -= 1
    return delta


def _date_index(write: IndexBatch, moves: list[Move]) -> None:
    """Keep the by-date sorted sets (Email/query's window over a folder) in step with the
    emails' visible folders."""
    for move in moves:
        before = move.before.mailboxes if move.before else ()
        after = move.after.mailboxes if move.after else ()
        if before != after:
            for mailbox_id in before:
                if mailbox_id not in after:
                    write.undate(move.email_id, move.received_at, mailbox_id)
            for mailbox_id in after:
                if mailbox_id not in before:
                    write.date(move.email_id, move.received_at, mailbox_id)
        if move.after is None:
            write.undate(move.email_id, move.received_at)
        elif move.before is None:
            write.date(move.email_id, move.received_at)
