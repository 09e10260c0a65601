"""One atomic write of an account's index: what the sync and /set paths change, as values.

A batch is one MULTI/EXEC transaction (one round trip, plus the lease fence's WATCH when the
writer holds the account's lease): the writer queues records, uid maps, threads, counts and
thread bookkeeping by their Python values, and the change-log entries last, through the
account's :class:`~gateway.cache.journal.Journal`. The key layout and the encodings stay here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.typing import EncodableT

from gateway.cache.emails import (
    EmailRecord,
    EmailStore,
    FolderMark,
    ThreadStats,
    encode,
    encode_mark,
)
from gateway.cache.journal import Journal, StateChange
from gateway.cache.keys import AccountKeys
from gateway.cache.locks import Lease
from gateway.cache.query_index import QueryKeys, QueryMove, query_writes
from gateway.cache.thread_links import write_links


class IndexBatch:
    """Writes queued in one transaction; see :func:`index_batch`."""

    def __init__(
        self, pipe: Pipeline | ClusterPipeline, keys: AccountKeys, journal: Journal
    ) -> None:
        self._pipe = pipe
        self._keys = keys
        self._journal = journal
        self._logs: list[tuple[str, dict[str, list[str]]]] = []
        # What the commit changed, once it did (see Journal.committed).
        self.changes: list[StateChange] = []

    # -- email records and uid maps --------------------------------------------------------

    def put_records(self, records: Iterable[EmailRecord]) -> None:
        kept: dict[EncodableT, EncodableT] = {r.id: encode(r) for r in records}
        if kept:
            self._pipe.hset(self._keys.emails, mapping=kept)

    def drop_records(self, ids: Iterable[str]) -> None:
        gone = list(ids)
        if gone:
            self._pipe.hdel(self._keys.emails, *gone)

    def map_uids(self, mailbox_id: str, owners: Mapping[int, str]) -> None:
        """uid -> email id of a folder's copies (its current UIDVALIDITY)."""
        self._pipe.hset(self._keys.uids(mailbox_id), mapping=dict(owners.items()))

    def unmap_uids(self, mailbox_id: str, uids: Iterable[int]) -> None:
        self._pipe.hdel(self._keys.uids(mailbox_id), *uids)

    def drop_uid_map(self, mailbox_id: str) -> None:
        self._pipe.delete(self._keys.uids(mailbox_id))

    def keep_old_uids(self, mailbox_id: str, owners: Mapping[int, str]) -> None:
        """A folder's uid map of an earlier UIDVALIDITY, until its copies are removed."""
        self._pipe.hset(self._keys.old_uids(mailbox_id), mapping=dict(owners.items()))

    def drop_old_uids(self, mailbox_id: str) -> None:
        self._pipe.delete(self._keys.old_uids(mailbox_id))

    # -- threads, dates, counts ------------------------------------------------------------

    def put_threads(self, threads: Mapping[str, ThreadStats]) -> None:
        values: dict[EncodableT, EncodableT] = {t: s.encode() for t, s in threads.items()}
        if values:
            self._pipe.hset(self._keys.threads, mapping=values)

    def drop_threads(self, thread_ids: Iterable[str]) -> None:
        gone = list(thread_ids)
        if gone:
            self._pipe.hdel(self._keys.threads, *gone)

    def date(self, email_id: str, received_at: int, mailbox_id: str | None = None) -> None:
        """The email joins the by-date set of a folder (or, with None, of the account)."""
        self._pipe.zadd(self._keys.dated(mailbox_id), {email_id: received_at})

    def undate(self, email_id: str, mailbox_id: str | None = None) -> None:
        self._pipe.zrem(self._keys.dated(mailbox_id), email_id)

    def add_counts(self, deltas: Mapping[tuple[str, str], int]) -> None:
        """(mailbox id, kind) -> how much that counter of the mailbox moves."""
        for (mailbox_id, kind), delta in deltas.items():
            if delta:
                self._pipe.hincrby(self._keys.counts, _count_field(mailbox_id, kind), delta)

    def map_thread_refs(self, refs: Mapping[bytes, str], subjects: Mapping[str, str]) -> None:
        """Message-ID keys -> thread, and new threads' subjects (gateway.sync.threads)."""
        if refs:
            self._pipe.hset(self._keys.thread_refs, mapping=dict(refs.items()))
        if subjects:
            self._pipe.hset(self._keys.thread_subjects, mapping=dict(subjects.items()))

    def link_threads(
        self,
        counts: Mapping[str, int],
        new_refs: Mapping[bytes, str],
        emptied: Mapping[str, Iterable[bytes]],
    ) -> None:
        """The gateway's own threads' bookkeeping (gateway.cache.thread_links)."""
        write_links(self._pipe, self._keys, counts, new_refs, emptied)

    # -- query structures (gateway.cache.query_index) ----------------------------------------

    def follow_queries(self, moves: Iterable[QueryMove]) -> None:
        """Keep the unseen/flagged sets and the size orders in step with the emails' views."""
        writes = query_writes(QueryKeys(self._keys), moves)
        for key, removed in writes.removes.items():
            self._pipe.zrem(key, *removed)
        for key, added in writes.adds.items():
            self._pipe.zadd(key, dict(added.items()))
        for key, present in writes.present_adds.items():
            _zadd_present(self._pipe, key, present)

    # -- folders ---------------------------------------------------------------------------

    def set_marks(self, marks: Mapping[str, FolderMark]) -> None:
        if marks:
            self._pipe.hset(
                self._keys.folder_marks,
                mapping={m: encode_mark(mark) for m, mark in marks.items()},
            )

    def forget_folder(self, mailbox_id: str, kinds: Iterable[str]) -> None:
        """A folder gone upstream: its mark, uid map and counters of ``kinds``."""
        self._pipe.hdel(self._keys.folder_marks, mailbox_id)
        self._pipe.delete(self._keys.uids(mailbox_id))
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

    async def _commit(self) -> None:
        for data_type, lists in self._logs:
            await self._journal.log(self._pipe, data_type, **lists)
        self.changes = self._journal.committed(await self._pipe.execute())


# ZADD only where the key exists: a lazily built structure is kept, never started, by writes.
_ZADD_PRESENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV, 2000 do
  redis.call('ZADD', KEYS[1], unpack(ARGV, i, math.min(i + 1999, #ARGV)))
end
return 1
"""


def _zadd_present(pipe: Pipeline | ClusterPipeline, key: str, mapping: Mapping[str, int]) -> None:
    args: list[EncodableT] = []
    for member, score in mapping.items():
        args += [score, member]
    pipe.eval(_ZADD_PRESENT, 1, key, *args)


def _count_field(mailbox_id: str, kind: str) -> str:
    return f"{mailbox_id}:{kind}"


@contextlib.asynccontextmanager
async def index_batch(store: EmailStore, held: Lease | None = None) -> AsyncIterator[IndexBatch]:
    """A transaction on the account's index, committed when the block ends without error.

    ``held``: the account's lease; the transaction then commits only while it is held
    (Lease.fence: LeaseLost before, WatchError at EXEC if it changed hands in between).
    """
    async with store.client.pipeline(transaction=True) as pipe:
        if held is not None:
            await held.fence(pipe)
        batch = IndexBatch(pipe, store.keys, Journal(store.state))
        yield batch
        await batch._commit()
