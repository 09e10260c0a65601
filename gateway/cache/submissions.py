"""The account's EmailSubmissions (RFC 8621 7): the only record of what the gateway sent.

IMAP keeps no trace of a submission, so Redis is where it lives: one msgpack record per
submission under the account's hash tag, a sorted set of the finished ones by when they
finished (retention and the per-account bound read it), and the ENVID / Message-ID each was
sent with, so a delivery status notification finds its submission. Every write is one
WATCH/MULTI/EXEC transaction that logs its change through the account's Journal
("EmailSubmission"), so /changes and /queryChanges see it like any other type's.

Records in a final or canceled state go ``retention`` seconds after they finished, lazily: the
next read or write of the account's submissions destroys them and logs them destroyed, so a
client's /changes tells it. Pending ones never expire. An account keeps at most
:data:`MAX_SUBMISSIONS`; making room destroys the oldest finished ones first, and when all are
pending a new one is refused (:class:`TooManySubmissions`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar, cast, get_args

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import WatchError
from redis.typing import EncodableT

from gateway.cache.changes import AccountState, format_state
from gateway.cache.codec import octets, pack, text, unpack
from gateway.cache.journal import Journal
from gateway.cache.keys import AccountKeys
from gateway.offload import sized

EMAIL_SUBMISSION = "EmailSubmission"
# Records one account keeps (pending ones included); a record is a few hundred octets, so
# 10 000 of them are a few MB, and /query reads them all.
MAX_SUBMISSIONS = 10_000
# Destroyed ids the change log remembers (a client that held one learns it is gone); past
# it the oldest PRUNE_BATCH more are forgotten, and states from before them can no longer be
# calculated from. Without it every submission ever made would stay in the log.
MAX_TOMBSTONES = MAX_SUBMISSIONS
PRUNE_BATCH = 1_000
# Transactions retried when another writer changed the account's submissions in between.
MAX_ATTEMPTS = 50
# Random octets of a submission id (base64url: 16 characters after the "S").
ID_OCTETS = 12

UndoStatus = Literal["pending", "final", "canceled"]
Delivered = Literal["queued", "yes", "no", "unknown"]
Displayed = Literal["unknown", "yes"]
UNDO_STATUSES: tuple[UndoStatus, ...] = get_args(UndoStatus)


@dataclass(frozen=True)
class DeliveryStatus:
    """One recipient's delivery status (RFC 8621 7)."""

    smtp_reply: str  # "250 2.1.5 Ok" form (gateway.smtp.replies.Reply.__str__)
    delivered: Delivered
    displayed: Displayed = "unknown"


@dataclass(frozen=True)
class SubmissionRecord:
    """One EmailSubmission as stored."""

    id: str
    identity_id: str
    email_id: str
    thread_id: str
    envelope: dict[str, Any]  # {"mailFrom": {"email", "parameters"}, "rcptTo": [...]}
    send_at: str  # UTCDate
    undo_status: UndoStatus
    delivery_status: dict[str, DeliveryStatus] | None  # by recipient address
    dsn_blob_ids: tuple[str, ...] = ()
    mdn_blob_ids: tuple[str, ...] = ()
    message_id: str | None = None  # the sent message's Message-ID (to match DSNs)
    envid: str | None = None  # the ENVID sent (to match DSNs), case as sent
    finished_at: float | None = None  # when it became final/canceled (the retention clock)


class TooManySubmissions(Exception):
    """The account holds MAX_SUBMISSIONS submissions and none of them is finished."""


class SubmissionExists(Exception):
    """A record with this id exists already (ids come from :meth:`SubmissionStore.new_id`)."""


class StoreContended(Exception):
    """Other writers changed the account's submissions on every attempt."""


def encode(record: SubmissionRecord) -> bytes:
    delivery = (
        None
        if record.delivery_status is None
        else {
            address: [status.smtp_reply, status.delivered, status.displayed]
            for address, status in record.delivery_status.items()
        }
    )
    return pack(
        [
            record.identity_id,
            record.email_id,
            record.thread_id,
            record.envelope,
            record.send_at,
            record.undo_status,
            delivery,
            list(record.dsn_blob_ids),
            list(record.mdn_blob_ids),
            record.message_id,
            record.envid,
            record.finished_at,
        ]
    )


def decode(submission_id: str, data: bytes | str) -> SubmissionRecord:
    (
        identity_id,
        email_id,
        thread_id,
        envelope,
        send_at,
        undo_status,
        delivery,
        dsn_blob_ids,
        mdn_blob_ids,
        message_id,
        envid,
        finished_at,
    ) = unpack(octets(data))
    return SubmissionRecord(
        submission_id,
        identity_id,
        email_id,
        thread_id,
        envelope,
        send_at,
        undo_status,
        None
        if delivery is None
        else {address: DeliveryStatus(*status) for address, status in delivery.items()},
        tuple(dsn_blob_ids),
        tuple(mdn_blob_ids),
        message_id,
        envid,
        finished_at,
    )


def _decode_all(raw: Mapping[str, bytes]) -> dict[str, SubmissionRecord]:
    return {submission_id: decode(submission_id, value) for submission_id, value in raw.items()}


def finished(record: SubmissionRecord) -> bool:
    """A record the retention clock runs for: no longer pending, and when it ended known."""
    return record.undo_status != "pending" and record.finished_at is not None


def _stamped(record: SubmissionRecord) -> SubmissionRecord:
    """A record written final or canceled without finished_at finished now: else it would
    never expire nor ever make room under the bound."""
    if record.undo_status != "pending" and record.finished_at is None:
        return replace(record, finished_at=time.time())
    return record


def message_id_key(message_id: str) -> str:
    """A Message-ID as matched: without the angle brackets and surrounding space (a DSN's
    copy of the header may fold or bracket it differently from what was sent)."""
    return message_id.strip().removeprefix("<").removesuffix(">").strip()


def _ref_fields(envid: str | None, message_id: str | None) -> list[str]:
    """The submission-refs fields of an ENVID and a Message-ID, the ENVID first (RFC 3461
    4.4: a DSN returns the ENVID as sent; the gateway compares it case-insensitively, being
    liberal in what it accepts)."""
    fields = []
    if envid:
        fields.append(f"e:{envid.lower()}")
    if message_id and message_id_key(message_id):
        fields.append(f"m:{message_id_key(message_id)}")
    return fields


def _refs(record: SubmissionRecord) -> list[str]:
    return _ref_fields(record.envid, record.message_id)


T = TypeVar("T")
Plan = Callable[[Pipeline | ClusterPipeline, "_Writes"], Awaitable[T]]


@dataclass
class _Writes:
    """What one transaction changes, queued after its reads (see SubmissionStore._transact)."""

    put: dict[str, SubmissionRecord] = field(default_factory=dict)
    dropped: dict[str, SubmissionRecord] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)


class SubmissionStore:
    """One account's submissions; ``retention`` None keeps finished ones (a handle made
    without the operator's setting must not expire what the setting keeps longer)."""

    def __init__(
        self, client: Redis | RedisCluster, account_id: str, retention: float | None = None
    ) -> None:
        self._client = client
        self.account_id = account_id
        self.keys = AccountKeys(account_id)
        self.state_log = AccountState(client, account_id)
        self.retention = retention

    @classmethod
    def of(
        cls, client: Redis | RedisCluster, account_id: str, retention: float | None = None
    ) -> SubmissionStore:
        return cls(client, account_id, retention)

    async def new_id(self) -> str:
        """A fresh id: random, so never one a destroyed submission had (its /changes history
        stays its own)."""
        return "S" + secrets.token_urlsafe(ID_OCTETS)

    # -- reads -----------------------------------------------------------------------------

    async def get(self, ids: Iterable[str]) -> dict[str, SubmissionRecord]:
        records, _ = await self.snapshot(list(ids))
        return records

    async def all_ids(self) -> list[str]:
        await self.expire()
        return [text(key) for key in await self._client.hkeys(self.keys.submissions)]

    async def count(self) -> int:
        await self.expire()
        return int(await self._client.hlen(self.keys.submissions))

    async def snapshot(
        self, ids: Sequence[str] | None = None
    ) -> tuple[dict[str, SubmissionRecord], str]:
        """The records of ``ids`` (None: all of them) and the EmailSubmission state, read in
        one transaction so they agree."""
        await self.expire()
        wanted = None if ids is None else list(dict.fromkeys(ids))
        async with self._client.pipeline(transaction=True) as pipe:
            if wanted is None:
                pipe.hgetall(self.keys.submissions)
            elif wanted:
                pipe.hmget(self.keys.submissions, wanted)
            pipe.hget(self.keys.state, EMAIL_SUBMISSION)
            pipe.hget(self.keys.meta, "epoch")
            replies = await pipe.execute()
        modseq, epoch = replies[-2], replies[-1]
        if wanted is None:
            raw = {text(key): value for key, value in replies[0].items()}
        elif wanted:
            raw = {i: v for i, v in zip(wanted, replies[0], strict=True) if v is not None}
        else:
            raw = {}
        if epoch is None:
            state = await self.state_log.state(EMAIL_SUBMISSION)
        else:
            state = format_state(text(epoch), int(modseq or 0))
        # All of a full account's records take a good part of a second to decode: beside
        # the loop (clients write the records' envelopes and ids).
        return await sized(sum(len(v) for v in raw.values()), _decode_all, raw), state

    async def state(self) -> str:
        await self.expire()
        return await self.state_log.state(EMAIL_SUBMISSION)

    async def find_for_dsn(
        self, envid: str | None, message_id: str | None
    ) -> SubmissionRecord | None:
        """The submission a delivery status notification (RFC 3464) reports on: by the ENVID
        it carries (RFC 3461 4.4), else by the Message-ID of the message it returns."""
        fields = _ref_fields(envid, message_id)
        if not fields:
            return None
        found = await self._client.hmget(self.keys.submission_refs, fields)
        for ref, submission_id in zip(fields, found, strict=True):
            if submission_id is None:
                continue
            record = (await self.get([text(submission_id)])).get(text(submission_id))
            if record is not None and ref in _refs(record):
                return record
        return None

    # -- writes ----------------------------------------------------------------------------

    async def create(self, record: SubmissionRecord) -> None:
        """Keep a new submission; makes room by destroying the oldest finished ones when the
        account holds MAX_SUBMISSIONS (TooManySubmissions when none is finished)."""

        async def plan(pipe: Pipeline | ClusterPipeline, writes: _Writes) -> None:
            if await pipe.hexists(self.keys.submissions, record.id):
                raise SubmissionExists(record.id)
            held = int(await pipe.hlen(self.keys.submissions)) - len(writes.dropped)
            excess = held + 1 - MAX_SUBMISSIONS
            if excess > 0:
                oldest = await self._oldest_finished(pipe, excess + len(writes.dropped))
                evicted = [i for i in oldest if i not in writes.dropped][:excess]
                if len(evicted) < excess:
                    raise TooManySubmissions(self.account_id)
                writes.dropped.update(await self._read(pipe, evicted))
            writes.put[record.id] = _stamped(record)
            writes.created.append(record.id)

        await self._transact(plan)

    async def replace(self, record: SubmissionRecord, *, expect: UndoStatus | None = None) -> bool:
        """Write ``record`` over the stored one, atomically, only if it exists and its
        undo_status is ``expect`` (None: any). False when it did not, and nothing changed:
        a cancel and the delayed sender's claim race on this, and one of them loses."""

        async def plan(pipe: Pipeline | ClusterPipeline, writes: _Writes) -> bool:
            if record.id in writes.dropped:
                return False
            current = (await self._read(pipe, [record.id])).get(record.id)
            if current is None or (expect is not None and current.undo_status != expect):
                return False
            writes.dropped[record.id] = current
            writes.put[record.id] = _stamped(record)
            writes.updated.append(record.id)
            return True

        return await self._transact(plan)

    async def update(
        self, submission_id: str, change: Callable[[SubmissionRecord], SubmissionRecord | None]
    ) -> SubmissionRecord | None:
        """Read, change and write one record atomically: ``change`` gets the stored record
        (again if another writer came between) and returns the new one, or None to leave it.
        Returns what was written; None when the record is gone or ``change`` declined. Two
        delivery reports of one submission applied at once both land this way."""

        async def plan(
            pipe: Pipeline | ClusterPipeline, writes: _Writes
        ) -> SubmissionRecord | None:
            if submission_id in writes.dropped:
                return None
            current = (await self._read(pipe, [submission_id])).get(submission_id)
            changed = None if current is None else change(current)
            if current is None or changed is None:
                return None
            if changed.id != submission_id:
                raise ValueError("an update cannot change a submission's id")
            written = _stamped(changed)
            writes.dropped[submission_id] = current
            writes.put[submission_id] = written
            writes.updated.append(submission_id)
            return written

        return await self._transact(plan)

    async def destroy(self, ids: Iterable[str]) -> list[str]:
        """Forget these submissions (RFC 8621 7.5: the record only; what was sent stays sent).
        Returns the ids that existed."""
        wanted = list(dict.fromkeys(ids))

        async def plan(pipe: Pipeline | ClusterPipeline, writes: _Writes) -> list[str]:
            missing = [i for i in wanted if i not in writes.dropped]
            writes.dropped.update(await self._read(pipe, missing))
            return [i for i in wanted if i in writes.dropped]

        return await self._transact(plan)

    async def expire(self) -> list[str]:
        """Destroy the finished records past retention (nothing without a retention)."""
        if self.retention is None:
            return []
        due = await self._due(self._client)
        if not due:
            return []

        async def plan(pipe: Pipeline | ClusterPipeline, writes: _Writes) -> list[str]:
            return sorted(writes.dropped)

        return await self._transact(plan)

    # -- the transaction -------------------------------------------------------------------

    async def _transact(self, plan: Plan[T]) -> T:
        """Run ``plan``'s reads under WATCH, then its writes, the retention's expiries and the
        change log in one MULTI/EXEC; again from the start when another writer came between.

        ``plan`` reads through the pipe (immediate mode) and fills the _Writes it is handed,
        in which the records past retention are already marked dropped."""
        k = self.keys
        tombstones = k.dead(EMAIL_SUBMISSION)
        for _ in range(MAX_ATTEMPTS):
            async with self._client.pipeline(transaction=True) as pipe:
                await pipe.watch(
                    k.submissions, k.submissions_finished, k.submission_refs, tombstones
                )
                writes = _Writes()
                if self.retention is not None:
                    writes.dropped.update(await self._read(pipe, await self._due(pipe)))
                result = await plan(pipe, writes)
                if not writes.put and not writes.dropped:
                    await pipe.reset()  # type: ignore[no-untyped-call]
                    return result
                refs = await self._stale_refs(pipe, writes)
                destroyed = [i for i in writes.dropped if i not in writes.put]
                forgotten = await self._old_tombstones(pipe, len(destroyed))
                pipe.multi()  # type: ignore[no-untyped-call]
                self._queue(pipe, writes, refs)
                self.state_log.forget(pipe, EMAIL_SUBMISSION, forgotten)
                journal = Journal(self.state_log)
                await journal.log(
                    pipe,
                    EMAIL_SUBMISSION,
                    created=writes.created,
                    updated=writes.updated,
                    destroyed=destroyed,
                )
                try:
                    replies = await pipe.execute()
                except WatchError:
                    continue
                journal.committed(replies)
                return result
        raise StoreContended(self.account_id)

    def _queue(
        self, pipe: Pipeline | ClusterPipeline, writes: _Writes, stale_refs: list[str]
    ) -> None:
        k = self.keys
        gone = [i for i in writes.dropped if i not in writes.put]
        if gone:
            pipe.hdel(k.submissions, *gone)
            pipe.zrem(k.submissions_finished, *gone)
        if stale_refs:
            pipe.hdel(k.submission_refs, *stale_refs)
        if writes.put:
            pipe.hset(k.submissions, mapping={i: encode(r) for i, r in writes.put.items()})
            ended = {i: r.finished_at for i, r in writes.put.items() if finished(r)}
            if ended:
                pipe.zadd(k.submissions_finished, cast(Mapping[str, float], ended))
            open_ = [i for i, r in writes.put.items() if not finished(r)]
            if open_:
                pipe.zrem(k.submissions_finished, *open_)
            refs: dict[EncodableT, EncodableT] = {
                ref: i for i, r in writes.put.items() for ref in _refs(r)
            }
            if refs:
                pipe.hset(k.submission_refs, mapping=refs)

    async def _stale_refs(self, pipe: Pipeline | ClusterPipeline, writes: _Writes) -> list[str]:
        """The refs of dropped or rewritten records that still name them and that no record
        written now takes over (another submission may have taken a ref since)."""
        kept = {ref for record in writes.put.values() for ref in _refs(record)}
        candidates = sorted(
            {ref for record in writes.dropped.values() for ref in _refs(record)} - kept
        )
        if not candidates:
            return []
        owners = await pipe.hmget(self.keys.submission_refs, candidates)
        return [
            ref
            for ref, owner in zip(candidates, owners, strict=True)
            if owner is not None and text(owner) in writes.dropped
        ]

    async def _old_tombstones(
        self, pipe: Pipeline | ClusterPipeline, destroying: int
    ) -> dict[str, int]:
        """The oldest destroyed ids whose log entries go when this write would leave more
        than MAX_TOMBSTONES (id -> the modseq of its destruction)."""
        if not destroying:
            return {}
        key = self.keys.dead(EMAIL_SUBMISSION)
        excess = int(await pipe.zcard(key)) + destroying - MAX_TOMBSTONES
        if excess <= 0:
            return {}
        rows: Sequence[Any] = await pipe.zrange(key, 0, excess + PRUNE_BATCH - 1, withscores=True)
        return {text(member): int(score) for member, score in rows}

    async def _read(
        self, pipe: Pipeline | ClusterPipeline, ids: Sequence[str]
    ) -> dict[str, SubmissionRecord]:
        if not ids:
            return {}
        values = await pipe.hmget(self.keys.submissions, list(ids))
        return {i: decode(i, v) for i, v in zip(ids, values, strict=True) if v is not None}

    async def _due(self, reader: Redis | RedisCluster | Pipeline | ClusterPipeline) -> list[str]:
        """Ids of finished records past retention."""
        if self.retention is None:
            return []
        horizon = time.time() - self.retention
        rows: Sequence[Any] = await reader.zrangebyscore(
            self.keys.submissions_finished, "-inf", horizon
        )
        return [text(row) for row in rows]

    async def _oldest_finished(self, pipe: Pipeline | ClusterPipeline, count: int) -> list[str]:
        rows: Sequence[Any] = await pipe.zrange(self.keys.submissions_finished, 0, count - 1)
        return [text(row) for row in rows]
