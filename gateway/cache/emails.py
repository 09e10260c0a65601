"""The email part of an account's index: records, uid maps, threads and per-folder sync marks.

One :class:`EmailRecord` per message however many folders hold it: the copies are kept as
``{mailbox id: {uid: flags}}``, so a move is a change of one record and the id survives it.
In Redis a record names its mailboxes by number (gateway.cache.mailbox_numbers) and lives in
a listpack-sized bucket (gateway.cache.record_buckets): about 80 octets an email.
Copies flagged ``\\Deleted`` stay in the record (the uid map must still know them) but are not
visible: an email with no other copy does not exist for JMAP (RFC 8621 4.1.1).

Immutable per-email data (header fields, the body structure, the preview) lives in hashes of
its own, filled on first fetch and never invalidated: an email id always names the same
octets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.typing import EncodableT

from gateway.cache.changes import AccountState, format_state
from gateway.cache.chunked_set import Slice, Unsettled, read_window, sort_members
from gateway.cache.codec import octets, pack, text, unpack
from gateway.cache.format_fence import OlderIndexFormat, check_format
from gateway.cache.index_script import REF_HASHING
from gateway.cache.keys import INDEX_FORMAT_FIELD, AccountKeys
from gateway.cache.locks import IndexWork, Lease, index_lease
from gateway.cache.mailbox_numbers import MailboxNumbers, StaleNumbers, UnknownNumber
from gateway.cache.record_buckets import BUCKET_LUA, RECORDS, bucket_count, shape_fields
from gateway.cache.thread_table import (
    HEADS_FIELD,
    READ_THREADS,
    THREAD_FUNCTIONS,
    THREADS,
    decode_links,
    decode_thread,
    is_head,
)

EMAIL = "Email"
THREAD = "Thread"
# Meta field set once the account's email index was complete at least once (the first sync's
# end): until then writers log no per-id changes (gateway.sync.index_writer, initial).
INDEXED_FIELD = "email-indexed"
# RFC 3501 flags are case-insensitive; \Recent is per session and never part of a view.
_DELETED = "\\deleted"
_DELETED_LENGTH = len(_DELETED)
# A folder's uid map is kept in hashes of this many uids each (uid // UID_BUCKET names one):
# Redis keeps a hash of at most 128 short fields as a listpack, about a third of the memory
# of one large hash (bench.index_memory). No directory is needed to find a uid's hash.
UID_BUCKET = 128
_SESSION_FLAGS = frozenset({"\\recent"})


def is_deleted(flags: Iterable[str]) -> bool:
    """Asked per copy of every email rendered or written: only a flag as long as
    ``\\Deleted`` is lower-cased, so a copy's usual one or two flags cost a length test."""
    # A plain loop: any() over a generator costs twice as much per call (0.22 against
    # 0.10 microseconds for a copy without flags).
    for flag in flags:  # noqa: SIM110
        if len(flag) == _DELETED_LENGTH and flag.lower() == _DELETED:
            return True
    return False


def _shown(uids: dict[int, list[str]]) -> bool:
    """Whether one folder holds a copy that is not deleted."""
    for flags in uids.values():  # noqa: SIM110 (as in is_deleted)
        if not is_deleted(flags):
            return True
    return False


@dataclass(slots=True)
class EmailRecord:
    """What queries, sorts and /changes need of one message, without fetching it."""

    id: str
    thread_id: str
    received_at: int  # seconds since the epoch, from the first copy's INTERNALDATE
    size: int
    copies: dict[str, dict[int, list[str]]] = field(default_factory=dict)

    @property
    def visible(self) -> bool:
        return any(map(_shown, self.copies.values()))

    @property
    def mailbox_ids(self) -> dict[str, bool]:
        return {mailbox_id: True for mailbox_id, uids in self.copies.items() if _shown(uids)}

    @property
    def flags(self) -> set[str]:
        """The union of the visible copies' flags (lower-cased): a message seen or flagged in
        any folder is seen or flagged."""
        found: set[str] = set()
        for uids in self.copies.values():
            for copy_flags in uids.values():
                if not is_deleted(copy_flags):
                    found.update(map(str.lower, copy_flags))
        return found - _SESSION_FLAGS

    def view(self) -> tuple[Any, ...] | None:
        """What a client sees of the record's mutable side; None when it is not visible.
        One pass over the copies: an index write takes it twice per record it touches."""
        mailboxes: list[str] = []
        found: set[str] = set()
        for mailbox_id, uids in self.copies.items():
            shown = False
            for copy_flags in uids.values():
                if not is_deleted(copy_flags):
                    shown = True
                    found.update(map(str.lower, copy_flags))
            if shown:
                mailboxes.append(mailbox_id)
        if not mailboxes:
            return None
        return (sorted(mailboxes), sorted(found - _SESSION_FLAGS))

    def visible_copies(self) -> list[tuple[str, int]]:
        """(mailbox id, uid) of every copy a fetch may read, in a stable order."""
        return sorted(
            (mailbox_id, uid)
            for mailbox_id, uids in self.copies.items()
            for uid, flags in uids.items()
            if not is_deleted(flags)
        )


# Flags a record stores as one bit each (exactly these spellings: any other stays a string,
# so a record reads back with the flags written, in another order: RFC 9051 2.3.2, a set);
# the common ones, so a usual copy's flags are one octet.
_FLAG_BITS = {
    flag: 1 << n
    for n, flag in enumerate(
        ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Forwarded", "$MDNSent")
    )
}
_FLAGS_OF_BITS = [
    [flag for flag, bit in _FLAG_BITS.items() if bits & bit] for bits in range(1 << len(_FLAG_BITS))
]


def _flags_value(flags: Iterable[str]) -> int | list[int | str]:
    bits = 0
    others: list[int | str] = []
    for flag in flags:
        bit = _FLAG_BITS.get(flag)
        if bit is None:
            others.append(flag)
        else:
            bits |= bit
    return [bits, *others] if others else bits


def encode(record: EmailRecord, numbers: Mapping[str, int]) -> bytes:
    """``[thread id, receivedAt, size, then mailbox number, uid, flags per copy]``: flags
    as bits of the common ones, or ``[bits, other flags...]``. Mailboxes by their number
    (gateway.cache.mailbox_numbers): a usual record is under 40 octets, so its bucket stays
    a listpack (gateway.cache.record_buckets)."""
    flat: list[Any] = [record.thread_id, record.received_at, record.size]
    for mailbox_id, uids in record.copies.items():
        number = numbers[mailbox_id]
        for uid, flags in uids.items():
            flat += [number, uid, _flags_value(flags)]
    return pack(flat)


def decode(email_id: str, data: bytes, mailboxes: Mapping[int, str]) -> EmailRecord:
    """A record :func:`encode` made; KeyError if it names a number ``mailboxes`` lacks."""
    thread_id, received_at, size, *flat = unpack(data)
    if len(flat) == 3:  # one copy: most records, decoded on every warm Email/get
        number, uid, value = flat
        one = {mailboxes[number]: {uid: _flags_of(value)}}
        return EmailRecord(email_id, thread_id, received_at, size, one)
    copies: dict[str, dict[int, list[str]]] = {}
    for k in range(0, len(flat), 3):
        copies.setdefault(mailboxes[flat[k]], {})[flat[k + 1]] = _flags_of(flat[k + 2])
    return EmailRecord(email_id, thread_id, received_at, size, copies)


def _flags_of(value: int | list[Any]) -> list[str]:
    if isinstance(value, int):
        return _FLAGS_OF_BITS[value].copy()
    return [*_FLAGS_OF_BITS[value[0]], *value[1:]]


def thread_of(data: bytes) -> str:
    """The thread id of an encoded record (needs no mailbox numbers)."""
    return str(unpack(data)[0])


def encode_value(value: Any) -> bytes:
    """A structured immutable value (parsed header fields, a body structure) as
    :meth:`EmailStore.cache` keeps it; plain lists, dicts, strings, numbers and bytes."""
    return pack(value)


def decode_value(data: bytes) -> Any:
    """A value :func:`encode_value` made, as read back by :meth:`EmailStore.cached_kinds`
    (apart, so a caller can weigh the octets and decode a large one off the loop)."""
    return unpack(data)


@dataclass(slots=True)
class ThreadStats:
    """One thread as the index keeps it."""

    members: list[list[Any]] = field(default_factory=list)  # [receivedAt, email id], sorted
    mailboxes: dict[str, int] = field(default_factory=dict)  # mailbox id -> members in it
    unread: int = 0
    # The member chunks it is stored with (gateway.cache.thread_table), so a rewrite drops
    # those it no longer needs without looking for them.
    chunks: int = 0
    # Its head and chunks as read, so a rewrite sends only the parts that change.
    stored: list[bytes] = field(default_factory=list)

    def email_ids(self) -> list[str]:
        return [email_id for _, email_id in self.members]

    def shown_in(self) -> tuple[set[str], set[str]]:
        """Mailboxes counting this thread in totalThreads, and in unreadThreads."""
        present = {m for m, n in self.mailboxes.items() if n > 0}
        return present, present if self.unread > 0 else set()


@dataclass(frozen=True, slots=True)
class FolderMark:
    """How far the email index has followed one folder.

    ``modseq`` and ``uidnext`` are what the last visit's SELECT reported: the baseline of the
    next QRESYNC. ``status`` is the mailbox listing's (HIGHESTMODSEQ, UIDNEXT, MESSAGES) the
    visit answered; a folder whose listing still says the same needs no visit.
    """

    uidvalidity: int
    modseq: int | None
    uidnext: int
    status: tuple[int | None, ...]


def encode_mark(mark: FolderMark) -> bytes:
    return pack([mark.uidvalidity, mark.modseq, mark.uidnext, list(mark.status)])


def decode_mark(data: bytes) -> FolderMark:
    uidvalidity, modseq, uidnext, status = unpack(data)
    return FolderMark(uidvalidity, modseq, uidnext, tuple(status))


# KEYS[1] the meta hash; ARGV[1] the bucket prefix, then Message-ID keys: their threads.
# KEYS[1] the meta hash; ARGV[1] the thread-refs bucket prefix, ARGV[2] the thread table's
# ('' for no subjects), then Message-ID keys. Returns their threads, then the distinct
# threads found and each one's first links field (its subject digest).
_READ_REFS = (
    REF_HASHING
    + THREAD_FUNCTIONS
    + """
local level, split = ref_shape(KEYS[1])
local found, threads, seen = {}, {}, {}
for i = 3, #ARGV do
  local thread = redis.call('HGET', ref_bucket(ARGV[1], ARGV[i], level, split), ARGV[i])
  found[i - 2] = thread or false
  if thread and ARGV[2] ~= '' and not seen[thread] then
    seen[thread] = true
    threads[#threads + 1] = thread
  end
end
local links = {}
if #threads > 0 then
  local tlevel, tsplit = bucket_shape(KEYS[1], 'threads')
  for i, thread in ipairs(threads) do
    links[i] = redis.call('HGET', thread_bucket(ARGV[2], thread, tlevel, tsplit),
      'r.' .. thread) or false
  end
end
return {found, threads, links}
"""
)
# KEYS: the state hash, the meta hash, the mailbox numbers, then hashes to read. ARGV: the
# data type, the record bucket prefix, then the fields (ids). Returns the records (each from
# its bucket, gateway.cache.record_buckets), each hash's values of the fields (nil where
# missing), then the type's modseq, the epoch and the mailbox numbers' generation: read at
# one instant, so the state agrees with the values and the numbers decode the records.
_READ_WITH_STATE = (
    BUCKET_LUA
    + """
local level, split = bucket_shape(KEYS[2], 'records')
local records = {}
for i = 3, #ARGV do
  local bucket = bucket_of(ARGV[2], bucket_record_hash(ARGV[i]), level, split)
  records[i - 2] = redis.call('HGET', bucket, ARGV[i])
end
local out = {records}
for k = 4, #KEYS do
  local values = {}
  for first = 3, #ARGV, 1000 do
    local part = redis.call('HMGET', KEYS[k], unpack(ARGV, first, math.min(first + 999, #ARGV)))
    for i = 1, #part do values[#values + 1] = part[i] end
  end
  out[#out + 1] = values
end
out[#out + 1] = redis.call('HGET', KEYS[1], ARGV[1])
out[#out + 1] = redis.call('HGET', KEYS[2], 'epoch')
out[#out + 1] = redis.call('HGET', KEYS[3], '*')
return out
"""
)
# Ids per read script of records(): the script finds each id's bucket in Lua (~1-3 µs an id
# on a busy 2-core machine, bench.record_reads), so 5,000 hold Redis ~10 ms.
RECORD_READ_PAGE = 5000
# Record buckets read per round trip by all_ids and record_values.
BUCKET_PAGE = 100
# Reads of records retried when the mailbox numbers change generation meanwhile.
_NUMBERS_TRIES = 3


class EmailStore:
    """Reads and writes the email part of one account's index."""

    def __init__(self, client: Redis | RedisCluster, account_id: str) -> None:
        self.client = client
        self.account_id = account_id
        self.keys = AccountKeys(account_id)
        self.state = AccountState(client, account_id)
        self.numbers = MailboxNumbers(client, self.keys)

    def lease(self) -> AbstractAsyncContextManager[Lease]:
        """Hold the account's email index lease (catch-up and flag writes; see
        gateway.cache.index_batch for writes fenced by it)."""
        return index_lease(self.client, self.keys, IndexWork.EMAILS)

    async def indexed(self) -> bool:
        """Whether the account's email index was ever complete: False during its first
        indexing (on whichever replica runs it: the field lives in Redis)."""
        return await self.client.hget(self.keys.meta, INDEXED_FIELD) is not None

    async def lease_held(self) -> bool:
        """Whether some process holds the account's email index lease now (a catch-up or a
        flag write, here or on another replica)."""
        return bool(await self.client.exists(self.keys.lock(IndexWork.EMAILS.value)))

    # -- records -----------------------------------------------------------------------------

    async def records(self, ids: Iterable[str]) -> dict[str, EmailRecord]:
        """The records of the ids that exist in the index (visible or not), read
        RECORD_READ_PAGE ids per script so no read holds Redis long."""
        wanted = list(dict.fromkeys(ids))
        found: dict[str, EmailRecord] = {}
        for start in range(0, len(wanted), RECORD_READ_PAGE):
            records, _, _ = await self.snapshot_with(wanted[start : start + RECORD_READ_PAGE], ())
            found.update(records)
        return found

    async def snapshot(self, ids: Iterable[str]) -> tuple[dict[str, EmailRecord], str]:
        """Records and the Email state read together, so they agree."""
        records, state, _ = await self.snapshot_with(ids, ())
        return records, state

    async def snapshot_with(
        self, ids: Iterable[str], kinds: Iterable[str]
    ) -> tuple[dict[str, EmailRecord], str, dict[str, dict[str, bytes]]]:
        """:meth:`snapshot` and :meth:`cached_kinds` of the same ids in one round trip (the
        warm Email/get reads nothing else): one script, atomic as a transaction, the ids sent
        once for every hash read (a MULTI would send them once per hash, and packing the
        arguments was a tenth of a warm request's CPU). The mailbox numbers decoding the
        records come from the process's cache while their generation is the one read."""
        wanted = list(dict.fromkeys(ids))
        names = list(dict.fromkeys(kinds)) if wanted else []
        hashes = [self.keys.immutable(kind) for kind in names]
        script = self.client.register_script(_READ_WITH_STATE)  # EVALSHA after the first
        keys = [self.keys.state, self.keys.meta, self.keys.mailbox_numbers, *hashes]
        args = [EMAIL, self.keys.record_bucket(""), *wanted]
        for attempt in range(1, _NUMBERS_TRIES + 1):
            values, *more, modseq, epoch, generation = await script(keys=keys, args=args)
            found = [(i, octets(v)) for i, v in zip(wanted, values, strict=True) if v is not None]
            try:
                records = await self._decode(
                    found, None if generation is None else text(generation)
                )
                break
            except StaleNumbers:
                if attempt == _NUMBERS_TRIES:
                    raise
        state = (
            await self.state.state(EMAIL)
            if epoch is None
            else format_state(text(epoch), int(modseq or 0))
        )
        cached = {
            kind: {i: octets(v) for i, v in zip(wanted, got, strict=True) if v is not None}
            for kind, got in zip(names, more, strict=True)
        }
        return records, state, cached

    async def _decode(
        self, found: list[tuple[str, bytes]], generation: str | None
    ) -> dict[str, EmailRecord]:
        if not found:
            return {}
        if generation is None:
            # Records without a numbers table: damaged (see UnknownNumber).
            await self._damaged()
            raise UnknownNumber(self.keys.mailbox_numbers)
        numbering = await self.numbers.table(generation)
        try:
            return {i: decode(i, v, numbering.by_number) for i, v in found}
        except KeyError:
            pass
        # A mailbox numbered since this process read the table (it only grows).
        numbering = await self.numbers.reload(generation)
        try:
            return {i: decode(i, v, numbering.by_number) for i, v in found}
        except KeyError as error:
            await self._damaged()
            raise UnknownNumber(self.keys.mailbox_numbers) from error

    async def _fence(self, stored: Any) -> None:
        """Refuse to answer from an index of another release's layout (its format field
        ``stored``, read with the data): a newer one is NewerIndexFormat; an older one is
        OlderIndexFormat after dropping the caught-up mark, so the retry's catch-up resets it
        (the mark would otherwise let reads trust it for up to the sync interval)."""
        try:
            check_format(self.account_id, stored)
        except OlderIndexFormat:
            await self.client.delete(self.keys.caught_up)
            raise

    async def _damaged(self) -> None:
        """Mark the index for a format reset (index_format.ensure_current, at the next
        catch-up): it no longer says which format it is in."""
        await self.client.hdel(self.keys.meta, INDEX_FORMAT_FIELD)

    async def _with_state(
        self, key: str, ids: Iterable[str], data_type: str
    ) -> tuple[dict[str, bytes], str]:
        """The fields ``ids`` of hash ``key`` that exist, and the type's state, in one
        transaction."""
        wanted = list(dict.fromkeys(ids))
        async with self.client.pipeline(transaction=True) as pipe:
            if wanted:
                pipe.hmget(key, wanted)
            pipe.hget(self.keys.state, data_type)
            pipe.hget(self.keys.meta, "epoch")
            results = await pipe.execute()
        values, modseq, epoch = results if wanted else [[], *results]
        state = (
            await self.state.state(data_type)
            if epoch is None
            else format_state(text(epoch), int(modseq or 0))
        )
        found = {i: octets(v) for i, v in zip(wanted, values, strict=True) if v is not None}
        return found, state

    async def dated_window(
        self,
        mailbox_id: str | None,
        *,
        ascending: bool,
        position: int,
        anchor: str | None,
        anchor_offset: int,
        limit: int | None,
    ) -> tuple[int, list[str], int, str] | None:
        """A window of a folder's (or all) emails by receivedAt, equal dates by id, in the
        same direction: (position, ids, total, Email state); None if ``anchor`` is not there.

        RFC 8620 5.5 windowing: a negative position counts from the end; an anchor (plus
        anchorOffset, clamped to 0) replaces the position. One script (chunked_set); without
        a limit the whole set in pipelined reads, or the records if it kept changing."""
        try:
            found = await self.read_set(
                self.keys.dated(mailbox_id),
                ascending=ascending,
                position=position,
                anchor=anchor,
                anchor_offset=anchor_offset,
                limit=limit,
            )
        except Unsettled:
            ids, state = await self._dated_from_records(mailbox_id)
            if not ascending:
                ids.reverse()
            if anchor is not None:
                if anchor not in ids:
                    return None
                start = max(0, ids.index(anchor) + anchor_offset)
            else:
                start = max(0, len(ids) + position) if position < 0 else position
            stop = None if limit is None else start + limit
            return start, ids[start:stop], len(ids), state
        if found is None:
            return None
        state = (
            await self.state.state(EMAIL)
            if found.epoch is None
            else format_state(found.epoch, found.modseq)
        )
        return found.position, found.ids, found.total, state

    async def read_set(self, key: str, **window: Any) -> Slice | None:
        """chunked_set.read_window of one of the account's email sets, the Email modseq and
        epoch read in the same script."""
        return await read_window(
            self.client,
            key,
            state_key=self.keys.state,
            meta_key=self.keys.meta,
            data_type=EMAIL,
            **window,
        )

    async def dated_slice(self, mailbox_id: str | None) -> Slice:
        """Every email of a folder's (or the account's) by-date set, oldest first, with the
        Email modseq read at the same instant; :class:`Unsettled` if it kept changing while
        read (chunked_set.read_whole)."""
        found = await self.read_set(
            self.keys.dated(mailbox_id),
            ascending=True,
            position=0,
            anchor=None,
            anchor_offset=0,
            limit=None,
        )
        if found is None:  # never without an anchor; for the type checker
            raise LookupError(mailbox_id)
        return found

    async def dated_ids(self, mailbox_id: str) -> list[str]:
        """Every email a folder holds (visible copies), from its by-date set; from the
        records if the set kept changing while read."""
        try:
            return (await self.dated_slice(mailbox_id)).ids
        except Unsettled:
            return (await self._dated_from_records(mailbox_id))[0]

    async def _dated_from_records(self, mailbox_id: str | None) -> tuple[list[str], str]:
        """A by-date set's members, oldest first, and the Email state, from the records
        (what a query without the set would read): for a set that kept changing. The state is
        read first and the records in pages (no one script holds Redis for the account): the
        ids may then reflect later changes too, which /queryChanges from it reports again."""
        state = await self.state.state(EMAIL)
        records = await self.records(await self.all_ids())
        members = [
            (r.id, r.received_at)
            for r in records.values()
            if r.visible and (mailbox_id is None or mailbox_id in r.mailbox_ids)
        ]
        return [i for i, _ in sort_members(members)], state

    async def count(self) -> int:
        """Emails in the index, visible or not: cheap, for limits."""
        return int(await self.client.hget(self.keys.meta, f"{RECORDS}-count") or 0)

    async def all_ids(self) -> list[str]:
        found = await self._table_pages(RECORDS, self.keys.record_bucket, values=False)
        return list(dict.fromkeys(text(k) for part in found for k in part))

    async def record_values(self) -> dict[str, bytes]:
        """Every encoded record (see :func:`thread_of`), as :meth:`all_ids` reads them."""
        found = await self._table_pages(RECORDS, self.keys.record_bucket, values=True)
        return {text(k): octets(v) for part in found for k, v in part.items()}

    async def _table_pages(
        self, name: str, bucket_key: Callable[[int], str], *, values: bool, fenced: bool = False
    ) -> list[Any]:
        """Every bucket's fields (or fields and values) of a linear-hashed table (records,
        threads), BUCKET_PAGE buckets per
        round trip, each page read with the table's shape: a split meanwhile only moves
        entries into a new bucket past the ones known, which the next pages then read (an
        entry may be read twice; callers keep one). ``fenced``: a table whose layout changed
        with the index format (see :meth:`_fence`)."""
        shape = shape_fields(name)
        first = await self.client.hmget(self.keys.meta, [*shape, INDEX_FORMAT_FIELD])
        if fenced:
            await self._fence(first[-1])
        wanted = bucket_count(first[:-1])
        read = 0
        parts: list[Any] = []
        while read < wanted:
            async with self.client.pipeline(transaction=True) as pipe:
                for n in range(read, min(wanted, read + BUCKET_PAGE)):
                    bucket = bucket_key(n)
                    if values:
                        pipe.hgetall(bucket)
                    else:
                        pipe.hkeys(bucket)
                pipe.hmget(self.keys.meta, shape)
                *got, now = await pipe.execute()
            parts += got
            read = min(wanted, read + BUCKET_PAGE)
            wanted = max(wanted, bucket_count(now))
        return parts

    async def uid_map(self, mailbox_id: str) -> dict[int, str]:
        return (await self._uid_maps([mailbox_id], old=False))[mailbox_id]

    async def held_uids(self, mailbox_ids: Iterable[str]) -> dict[str, dict[int, str]]:
        """Every copy the index may still hold of each folder, in two round trips: its uid
        map and, after an interrupted re-index, the uid map of the earlier UIDVALIDITY."""
        return await self._uid_maps(mailbox_ids, old=True)

    async def _uid_maps(
        self, mailbox_ids: Iterable[str], *, old: bool
    ) -> dict[str, dict[int, str]]:
        wanted = list(dict.fromkeys(mailbox_ids))
        if not wanted:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for mailbox_id in wanted:
                pipe.smembers(self.keys.uid_buckets(mailbox_id))
            buckets = await pipe.execute()
        async with self.client.pipeline(transaction=False) as pipe:
            for mailbox_id, numbers in zip(wanted, buckets, strict=True):
                if old:
                    pipe.hgetall(self.keys.old_uids(mailbox_id))
                for number in numbers:
                    pipe.hgetall(self.keys.uid_bucket(mailbox_id, int(number)))
            results = iter(await pipe.execute())
        held: dict[str, dict[int, str]] = {}
        for mailbox_id, numbers in zip(wanted, buckets, strict=True):
            raw: dict[bytes | str, bytes | str] = {}
            for _ in range(len(numbers) + old):
                raw.update(next(results))
            held[mailbox_id] = {int(uid): text(email_id) for uid, email_id in raw.items()}
        return held

    async def email_ids_of(self, mailbox_id: str, uids: Iterable[int]) -> dict[int, str]:
        wanted = list(dict.fromkeys(uids))
        if not wanted:
            return {}
        by_bucket: dict[int, list[int]] = {}
        for uid in wanted:
            by_bucket.setdefault(uid // UID_BUCKET, []).append(uid)
        async with self.client.pipeline(transaction=False) as pipe:
            for bucket, part in by_bucket.items():
                pipe.hmget(self.keys.uid_bucket(mailbox_id, bucket), part)
            results = await pipe.execute()
        found: dict[int, str] = {}
        for part, values in zip(by_bucket.values(), results, strict=True):
            found.update((u, text(v)) for u, v in zip(part, values, strict=True) if v is not None)
        return found

    # -- threads -----------------------------------------------------------------------------

    async def thread_count(self) -> int:
        heads, stored = await self.client.hmget(self.keys.meta, [HEADS_FIELD, INDEX_FORMAT_FIELD])
        await self._fence(stored)
        return int(heads or 0)

    async def thread_ids(self) -> list[str]:
        found = await self._table_pages(THREADS, self.keys.thread_bucket, values=False, fenced=True)
        return list(dict.fromkeys(text(k) for part in found for k in part if is_head(k)))

    async def thread_snapshot(self, ids: Iterable[str]) -> tuple[dict[str, list[str]], str]:
        """Each existing thread's email ids (oldest first, RFC 8621 3) and the Thread state."""
        parts, _, modseq, epoch, _ = await self._read_threads(ids)
        state = (
            await self.state.state(THREAD)
            if epoch is None
            else format_state(text(epoch), int(modseq or 0))
        )
        return {t: [i for _, i in decode_thread(p)[2]] for t, p in parts.items()}, state

    async def threads(self, thread_ids: Iterable[str]) -> dict[str, ThreadStats]:
        """The records of the given threads; an empty one for a thread not (or no longer) kept."""
        stats, _ = await self.threads_and_links(thread_ids, ())
        return stats

    async def threads_and_links(
        self, thread_ids: Iterable[str], link_ids: Iterable[str]
    ) -> tuple[dict[str, ThreadStats], dict[str, int]]:
        """:meth:`threads`, and the email records counted for each of ``link_ids`` that has
        any (the gateway's own threads' links, gateway.cache.thread_table): what an index
        write needs, in one script."""
        wanted = list(dict.fromkeys(thread_ids))
        linked = list(dict.fromkeys(link_ids))
        for attempt in range(1, _NUMBERS_TRIES + 1):
            parts, links, _, _, generation = await self._read_threads(wanted, linked)
            decoded = {t: decode_thread(p) for t, p in parts.items()}
            numbers = [n for _, flat, _ in decoded.values() for n in flat[::2]]
            try:
                names = await self._mailbox_names(
                    numbers, None if generation is None else text(generation)
                )
                break
            except StaleNumbers:
                if attempt == _NUMBERS_TRIES:
                    raise
        found = {
            t: ThreadStats(
                members,
                {names[flat[i]]: flat[i + 1] for i in range(0, len(flat), 2)},
                unread,
                len(parts[t]) - 1,
                parts[t],
            )
            for t, (unread, flat, members) in decoded.items()
        }
        counts = {t: decode_links(v)[0] for t, v in links.items()}
        return {t: found.get(t) or ThreadStats() for t in wanted}, counts

    async def _read_threads(
        self, ids: Iterable[str], link_ids: Iterable[str] = ()
    ) -> tuple[dict[str, list[bytes]], dict[str, bytes], Any, Any, Any]:
        """Each existing thread's head and chunks and each of ``link_ids``'s first links
        field, with the Thread modseq, the epoch and the mailbox numbers' generation read at
        the same instant (one script), from an index of this release's format only."""
        wanted = list(dict.fromkeys(ids))
        linked = list(dict.fromkeys(link_ids))
        read = READ_THREADS
        found, links, modseq, epoch, generation, stored = await self.client.register_script(read)(
            keys=[self.keys.state, self.keys.meta, self.keys.mailbox_numbers],
            args=[THREAD, self.keys.thread_bucket(""), len(linked), *linked, *wanted],
        )
        await self._fence(stored)
        parts = {
            t: [octets(v) for v in p] for t, p in zip(wanted, found, strict=True) if p is not None
        }
        values = {t: octets(v) for t, v in zip(linked, links, strict=True) if v is not None}
        return parts, values, modseq, epoch, generation

    async def _mailbox_names(self, numbers: list[int], generation: str | None) -> dict[int, str]:
        """The mailbox ids of ``numbers`` in the table of ``generation``."""
        if not numbers:
            return {}
        if generation is None:
            await self._damaged()
            raise UnknownNumber(self.keys.mailbox_numbers)
        numbering = await self.numbers.table(generation)
        if any(n not in numbering.by_number for n in numbers):
            numbering = await self.numbers.reload(generation)
        if any(n not in numbering.by_number for n in numbers):
            await self._damaged()
            raise UnknownNumber(self.keys.mailbox_numbers)
        return numbering.by_number

    async def thread_refs(self, names: Iterable[bytes]) -> dict[bytes, str]:
        """The thread each Message-ID key (gateway.sync.threads.ref_key) points at, if any."""
        refs, _ = await self._read_refs(names, subjects=False)
        return refs

    async def thread_refs_and_subjects(
        self, names: Iterable[bytes]
    ) -> tuple[dict[bytes, str], dict[str, bytes]]:
        """:meth:`thread_refs`, and the subject digest (gateway.cache.thread_table) of each
        thread found that has records: what threading a page needs, in one round trip."""
        return await self._read_refs(names, subjects=True)

    async def _read_refs(
        self, names: Iterable[bytes], *, subjects: bool
    ) -> tuple[dict[bytes, str], dict[str, bytes]]:
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}, {}
        found, threads, links = await self.client.register_script(_READ_REFS)(
            keys=[self.keys.meta],
            args=[
                self.keys.thread_ref_bucket(""),
                self.keys.thread_bucket("") if subjects else "",
                *wanted,
            ],
        )
        refs = {n: text(v) for n, v in zip(wanted, found, strict=True) if v is not None}
        digests = {
            text(t): decode_links(octets(v))[1]
            for t, v in zip(threads, links, strict=True)
            if v is not None
        }
        return refs, digests

    # -- folder marks --------------------------------------------------------------------------

    async def set_mark(self, mailbox_id: str, mark: FolderMark) -> None:
        await self.client.hset(self.keys.folder_marks, mailbox_id, encode_mark(mark))

    async def marks(self) -> dict[str, FolderMark]:
        raw = await self.client.hgetall(self.keys.folder_marks)
        return {text(key): decode_mark(octets(value)) for key, value in raw.items()}

    # -- immutable per-email data ------------------------------------------------------------------

    async def cached_kinds(
        self, kinds: Iterable[str], ids: Iterable[str]
    ) -> dict[str, dict[str, bytes]]:
        """Immutable data of several kinds in one round trip: kind -> email id -> value."""
        wanted = list(dict.fromkeys(ids))
        names = list(dict.fromkeys(kinds))
        if not wanted or not names:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for kind in names:
                pipe.hmget(self.keys.immutable(kind), wanted)
            results = await pipe.execute()
        return {
            kind: {i: octets(v) for i, v in zip(wanted, values, strict=True) if v is not None}
            for kind, values in zip(names, results, strict=True)
        }

    async def cache(self, kinds: Mapping[str, Mapping[str, bytes]]) -> None:
        """Store immutable data of several kinds in one round trip."""
        if not any(kinds.values()):
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for kind, values in kinds.items():
                if values:
                    mapping: dict[EncodableT, EncodableT] = dict(values.items())
                    pipe.hset(self.keys.immutable(kind), mapping=mapping)
            await pipe.execute()

    # -- decoded text of parts, kept for a while ----------------------------------------------

    async def texts(self, ids: Iterable[str]) -> dict[str, dict[str, list[Any]]]:
        """Per email, the cached texts of its parts: partId -> [text, encoding problem]."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        values = await self.client.mget([self.keys.texts(i) for i in wanted])
        return {i: unpack(octets(v)) for i, v in zip(wanted, values, strict=True) if v}

    async def cache_texts(self, texts: Mapping[str, dict[str, list[Any]]], ttl: int) -> None:
        """Add part texts per email, each email's entry expiring ``ttl`` seconds from now."""
        if not texts:
            return
        known = await self.texts(texts)
        async with self.client.pipeline(transaction=False) as pipe:
            for email_id, parts in texts.items():
                merged = {**known.get(email_id, {}), **parts}
                pipe.set(self.keys.texts(email_id), pack(merged), ex=ttl)
            await pipe.execute()

    # -- meta --------------------------------------------------------------------------------

    async def meta(self, name: str) -> str | None:
        value = await self.client.hget(self.keys.meta, name)
        return None if value is None else text(value)

    async def set_meta(self, name: str, value: str) -> None:
        await self.client.hset(self.keys.meta, name, value)
