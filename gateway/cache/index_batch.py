"""One atomic write of an account's index: what the sync and /set paths change, as values.

A batch is one Lua script run (gateway.cache.index_script: one round trip, the lease checked
inside it instead of a WATCH): the writer records records, uid maps, threads, counts and
thread bookkeeping by their Python values, and the change-log entries last, announced
through the account's :class:`~gateway.cache.journal.Journal` once the script returned. The
key layout and the encodings stay here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Iterable, Mapping

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from gateway.cache.changes import MINOR_TYPES, floor_field
from gateway.cache.emails import (
    EMAIL,
    THREAD,
    UID_BUCKET,
    EmailRecord,
    EmailStore,
    FolderMark,
    ThreadStats,
    encode,
    encode_mark,
)
from gateway.cache.index_script import STALE_NUMBERS, OpRecorder
from gateway.cache.journal import Journal, StateChange
from gateway.cache.keys import AccountKeys
from gateway.cache.locks import Lease, LeaseLost
from gateway.cache.mailbox_numbers import MailboxNumbers, StaleNumbers
from gateway.cache.query_index import QueryKeys, QueryMove, query_writes
from gateway.cache.thread_links import write_links, write_subjects
from gateway.cache.thread_table import encode_thread


class IndexBatch:
    """Writes recorded for one script run; see :func:`index_batch`."""

    def __init__(
        self,
        keys: AccountKeys,
        journal: Journal,
        numbers: MailboxNumbers,
        *,
        initial: bool = False,
    ) -> None:
        self._pipe = OpRecorder(keys)
        self._keys = keys
        self._numbers = numbers
        # Records put (or None: dropped) by id, the last write of each winning: written
        # at commit, before the change log.
        self._records: dict[str, EmailRecord | None] = {}
        # Threads put, by id: encoded at commit with the records.
        self._threads: dict[str, ThreadStats] = {}
        # New threads' subjects not yet written with their links.
        self._subjects: dict[str, str] = {}
        self._journal = journal
        # The account's first indexing: Email and Thread states move, nothing per id is
        # logged (gateway.sync.index_writer, initial).
        self._initial = initial
        self._logs: list[tuple[str, dict[str, list[str]]]] = []
        # What the commit changed, once it did (see Journal.committed).
        self.changes: list[StateChange] = []
        # Chunked sets' members (name -> id -> receivedAt), sent at commit as one sorted op
        # per set and way (gateway.cache.chunked_set): removals first.
        self._chunk_removes: dict[str, dict[str, int]] = {}
        self._chunk_adds: dict[str, dict[str, int]] = {}
        self._chunk_drops: list[str] = []

    # -- email records and uid maps --------------------------------------------------------

    def put_records(self, records: Iterable[EmailRecord]) -> None:
        """Records to write: encoded at commit, once their mailboxes have numbers."""
        for record in records:
            self._records[record.id] = record

    def drop_records(self, ids: Iterable[str]) -> None:
        for email_id in ids:
            self._records[email_id] = None

    def map_uids(self, mailbox_id: str, owners: Mapping[int, str]) -> None:
        """uid -> email id of a folder's copies (its current UIDVALIDITY), in its buckets."""
        by_bucket: dict[int, dict[int, str]] = {}
        for uid, email_id in owners.items():
            by_bucket.setdefault(uid // UID_BUCKET, {})[uid] = email_id
        for bucket, part in by_bucket.items():
            self._pipe.hset(self._keys.uid_bucket(mailbox_id, bucket), mapping=part)
        if by_bucket:
            self._pipe.sadd(self._keys.uid_buckets(mailbox_id), *by_bucket)

    def unmap_uids(self, mailbox_id: str, uids: Iterable[int]) -> None:
        """Forget uids; a bucket left empty vanishes (Redis), its number stays listed."""
        by_bucket: dict[int, list[int]] = {}
        for uid in uids:
            by_bucket.setdefault(uid // UID_BUCKET, []).append(uid)
        for bucket, part in by_bucket.items():
            self._pipe.hdel(self._keys.uid_bucket(mailbox_id, bucket), *part)

    def drop_uid_map(self, mailbox_id: str) -> None:
        self._pipe.drop_buckets(
            self._keys.uid_buckets(mailbox_id), self._keys.uid_bucket(mailbox_id, 0)[:-1]
        )

    def keep_old_uids(self, mailbox_id: str, owners: Mapping[int, str]) -> None:
        """A folder's uid map of an earlier UIDVALIDITY, until its copies are removed."""
        self._pipe.hset(self._keys.old_uids(mailbox_id), mapping=dict(owners.items()))

    def drop_old_uids(self, mailbox_id: str) -> None:
        self._pipe.delete(self._keys.old_uids(mailbox_id))

    # -- threads, dates, counts ------------------------------------------------------------

    def put_threads(self, threads: Mapping[str, ThreadStats]) -> None:
        """Threads with visible members: encoded at commit (gateway.cache.thread_table),
        once their mailboxes have numbers."""
        self._threads.update(threads)

    def drop_threads(self, thread_ids: Iterable[str]) -> None:
        gone = list(thread_ids)
        if gone:
            self._pipe.tdel(gone)

    def date(self, email_id: str, received_at: int, mailbox_id: str | None = None) -> None:
        """The email joins the by-date set of a folder (or, with None, of the account)."""
        self._chunk_adds.setdefault(self._keys.dated(mailbox_id), {})[email_id] = received_at

    def undate(self, email_id: str, received_at: int, mailbox_id: str | None = None) -> None:
        """The email leaves a by-date set; ``received_at``: its score there (it never
        changes for an email id), which finds its chunk (gateway.cache.chunked_set)."""
        self._chunk_removes.setdefault(self._keys.dated(mailbox_id), {})[email_id] = received_at

    def add_counts(self, deltas: Mapping[tuple[str, str], int]) -> None:
        """(mailbox id, kind) -> how much that counter of the mailbox moves."""
        for (mailbox_id, kind), delta in deltas.items():
            if delta:
                self._pipe.hincrby(self._keys.counts, _count_field(mailbox_id, kind), delta)

    def map_thread_refs(self, refs: Mapping[bytes, str], subjects: Mapping[str, str]) -> None:
        """Message-ID keys -> thread, and new threads' subjects (gateway.sync.threads): the
        subjects go with the threads' links (link_threads, or alone at commit)."""
        self._pipe.refs_put(refs)
        self._subjects.update(subjects)

    def link_threads(
        self,
        counts: Mapping[str, int],
        new_refs: Mapping[bytes, str],
        emptied: Collection[str],
    ) -> None:
        """The gateway's own threads' bookkeeping (gateway.cache.thread_links): record
        counts with the keys just mapped and the subjects given so far, threads left empty."""
        write_links(self._pipe, counts, new_refs, self._subjects, emptied)
        self._subjects = {t: s for t, s in self._subjects.items() if t not in counts}

    # -- query structures (gateway.cache.query_index) ----------------------------------------

    def follow_queries(self, moves: Iterable[QueryMove]) -> None:
        """Keep the unseen/flagged sets and the size orders in step with the emails' views."""
        writes = query_writes(QueryKeys(self._keys), moves)
        for name, members in writes.chunk_removes.items():
            self._chunk_removes.setdefault(name, {}).update(members)
        for name, members in writes.chunk_adds.items():
            self._chunk_adds.setdefault(name, {}).update(members)
        for key, removed in writes.removes.items():
            self._pipe.zrem(key, *removed)
        for key, present in writes.present_adds.items():
            self._pipe.zadd_present(key, present)

    # -- folders ---------------------------------------------------------------------------

    def set_marks(self, marks: Mapping[str, FolderMark]) -> None:
        if marks:
            self._pipe.hset(
                self._keys.folder_marks,
                mapping={m: encode_mark(mark) for m, mark in marks.items()},
            )

    def forget_folder(self, mailbox_id: str, kinds: Iterable[str]) -> None:
        """A folder gone upstream: its mark, uid map, counters of ``kinds`` and its chunked
        sets (by date, unread, flagged: whatever members are left, and their count hashes,
        which the format reset could no longer find without the folder's mark)."""
        queries = QueryKeys(self._keys)
        self._chunk_drops += [
            self._keys.dated(mailbox_id),
            queries.unseen(mailbox_id),
            queries.flagged(mailbox_id),
        ]
        self._pipe.hdel(self._keys.folder_marks, mailbox_id)
        self.drop_uid_map(mailbox_id)
        self._pipe.hdel(self._keys.counts, *(_count_field(mailbox_id, k) for k in kinds))

    # -- the change log --------------------------------------------------------------------

    def log(
        self,
        data_type: str,
        *,
        created: Iterable[str] = (),
        updated: Iterable[str] = (),
        destroyed: Iterable[str] = (),
        minor: Iterable[str] = (),
    ) -> None:
        """Changes of one data type, logged when the batch commits (after every other
        write of it, in the same transaction)."""
        lists = {
            "created": list(created),
            "updated": list(updated),
            "destroyed": list(destroyed),
            "minor": list(minor),
        }
        if any(lists.values()):
            self._logs.append((data_type, lists))

    def mark_indexed(self, indexed_field: str) -> None:
        """The first indexing is complete: states before the current ones of Email and
        Thread cannot be calculated from (no log was kept), later ones are logged."""
        for data_type in _INITIAL_TYPES:
            self._pipe.raise_floor(data_type, floor_field(data_type))
        self._pipe.hset(self._keys.meta, mapping={indexed_field: "1"})

    async def _encode_records(self) -> None:
        """The records' and threads' ops: mailbox numbers from the process's cache, or
        assigned (one round trip) for a mailbox new to it; the script writes them only while
        the numbers are of that generation."""
        kept = {i: r for i, r in self._records.items() if r is not None}
        gone = [i for i, r in self._records.items() if r is None]
        if gone:
            self._pipe.rdel(gone)
        if not kept and not self._threads:
            return
        numbering = await self._numbers.assign(
            [
                *(m for record in kept.values() for m in record.copies),
                *(m for stats in self._threads.values() for m in stats.mailboxes),
            ]
        )
        if kept:
            values = {i: encode(r, numbering.by_id) for i, r in kept.items()}
            self._pipe.rput(self._keys.mailbox_numbers, numbering.generation, values)
        if self._threads:
            by_id = numbering.by_id
            fields: dict[str, tuple[int, int, bytes, list[bytes]]] = {}
            for t, stats in self._threads.items():
                parts = encode_thread(
                    stats.unread,
                    {by_id[m]: n for m, n in stats.mailboxes.items()},
                    stats.members,
                    stats.stored,
                )
                stored = stats.stored
                start = next(
                    (k for k in range(1, len(parts)) if k >= len(stored) or stored[k] != parts[k]),
                    len(parts),
                )
                head = b"" if stored and stored[0] == parts[0] else parts[0]
                fields[t] = (stats.chunks, start, head, parts[start:])
            self._pipe.tput(self._keys.mailbox_numbers, numbering.generation, fields)

    async def _commit(self, client: Redis | RedisCluster, held: Lease | None) -> None:
        if self._subjects:
            write_subjects(self._pipe, self._subjects)
        await self._encode_records()
        for name, members in self._chunk_removes.items():
            self._pipe.chunk_remove(name, members)
        for name, members in self._chunk_adds.items():
            self._pipe.chunk_add(name, members)
        for name in self._chunk_drops:
            self._pipe.chunk_drop(name)
        for data_type, lists in self._logs:
            if self._initial and data_type in _INITIAL_TYPES:
                mode = "i"
            else:
                mode = "f" if data_type in MINOR_TYPES else "n"
            pairs: list[str] = []
            for kind, name in (("c", "created"), ("u", "updated"), ("d", "destroyed")):
                for item in lists[name]:
                    pairs += [kind, item]
            for item in lists["minor"]:
                pairs += ["p", item]
            self._pipe.log(data_type, mode, floor_field(data_type), pairs)
            self._journal.expect(data_type, bool(pairs))
        if not len(self._pipe):
            return
        lease = None if held is None else (held.key, held.token)
        try:
            replies = await self._pipe.run(client, lease)
        except ResponseError as error:
            if STALE_NUMBERS in str(error):
                # The table was made anew (a reset, a flushed Redis): read it again next time.
                self._numbers.forget()
                raise StaleNumbers(self._keys.mailbox_numbers) from error
            raise
        if replies is None:
            raise LeaseLost(held.key if held is not None else self._keys.meta)
        self.changes = self._journal.committed(replies)


# Types whose per-id log the first indexing skips.
_INITIAL_TYPES = (EMAIL, THREAD)


def _count_field(mailbox_id: str, kind: str) -> str:
    return f"{mailbox_id}:{kind}"


@contextlib.asynccontextmanager
async def index_batch(
    store: EmailStore, held: Lease | None = None, *, initial: bool = False
) -> AsyncIterator[IndexBatch]:
    """An atomic write of the account's index, applied when the block ends without error.

    ``held``: the account's lease; the write then applies only while it is held (the script
    checks the token: LeaseLost, nothing written, if it changed hands). ``initial``: see
    IndexBatch.
    """
    batch = IndexBatch(store.keys, Journal(store.state), store.numbers, initial=initial)
    yield batch
    await batch._commit(store.client, held)
