"""The account's mailboxes as the index keeps them, and their change log.

Records are written only by the sync (under the account's lease), which compares what the
upstream lists with what the index holds and logs the difference. The upstream's counts are
kept but not shown: the counts clients see come from the email index, whose writer logs a
change of them alone as a minor update, so Mailbox/changes can answer ``updatedProperties``
(RFC 8621 2.2).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, fields

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.typing import EncodableT

from gateway.cache.changes import AccountState, format_state
from gateway.cache.codec import pack, text, unpack
from gateway.cache.journal import Journal
from gateway.cache.keys import AccountKeys
from gateway.cache.locks import IndexWork, Lease, index_lease

MAILBOX = "Mailbox"
LISTING_FIELD = "mailbox-listing"
# Not Mailbox properties: they move with mail and matter to the email sync only. The counts a
# client sees come from the email index, which logs their changes itself.
INVISIBLE_FIELDS = frozenset({"total", "unread", "uidvalidity", "uidnext", "highestmodseq"})


@dataclass(frozen=True)
class MailboxRecord:
    """One upstream mailbox as the gateway knows it."""

    id: str
    name: str  # the full IMAP name, decoded from modified UTF-7
    delimiter: str | None
    parent_id: str | None
    role: str | None
    subscribed: bool
    selectable: bool
    may_create_child: bool
    rights: str | None  # RFC 4314 rights string, when the upstream reports one
    total: int
    unread: int
    uidvalidity: int | None
    uidnext: int | None
    highestmodseq: int | None

    @property
    def leaf(self) -> str:
        """The last level of the name, which is the JMAP ``name``."""
        if not self.delimiter:
            return self.name
        return self.name.rsplit(self.delimiter, 1)[-1]

    def differs_beyond(self, other: MailboxRecord, ignored: frozenset[str]) -> bool:
        return any(
            getattr(self, name) != getattr(other, name) for name in _FIELDS if name not in ignored
        )


_FIELDS = tuple(f.name for f in fields(MailboxRecord))


def encode(record: MailboxRecord) -> bytes:
    return pack(list(asdict(record).values()))


@functools.lru_cache(maxsize=4096)
def decode(data: bytes | str) -> MailboxRecord:
    """The record (frozen, so one decoded value can be shared: every request reads them
    all)."""
    values = unpack(data if isinstance(data, bytes) else data.encode())
    return MailboxRecord(**dict(zip(_FIELDS, values, strict=True)))


@dataclass(frozen=True)
class MailboxDiff:
    created: list[str]
    updated: list[str]
    destroyed: list[str]
    refreshed: list[str]  # changed only in what clients do not see (STATUS figures)


def diff(old: Mapping[str, MailboxRecord], new: Mapping[str, MailboxRecord]) -> MailboxDiff:
    """What changed between two listings; only Mailbox-visible fields count."""
    created = [i for i in new if i not in old]
    destroyed = [i for i in old if i not in new]
    updated: list[str] = []
    refreshed: list[str] = []
    for mailbox_id in new.keys() & old.keys():
        before, after = old[mailbox_id], new[mailbox_id]
        if before == after:
            continue
        if before.differs_beyond(after, INVISIBLE_FIELDS):
            updated.append(mailbox_id)
        else:
            refreshed.append(mailbox_id)
    return MailboxDiff(created, sorted(updated), destroyed, refreshed)


class MailboxStore:
    """Reads and writes the mailbox part of one account's index."""

    def __init__(self, client: Redis | RedisCluster, account_id: str) -> None:
        self._client = client
        self.account_id = account_id
        self.keys = AccountKeys(account_id)
        self.state = AccountState(client, account_id)

    def lease(self) -> AbstractAsyncContextManager[Lease]:
        """Hold the account's mailbox index lease (the mailbox sync)."""
        return index_lease(self._client, self.keys, IndexWork.MAILBOXES)

    async def snapshot(
        self,
    ) -> tuple[dict[str, MailboxRecord], str, dict[str, int], dict[str, dict[str, int]]]:
        """Records, Mailbox state, sort orders and counts read together, so they agree.

        Counts are mailbox id -> kind -> value (kinds in gateway.sync.tallies)."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.mailboxes)
            pipe.hget(self.keys.state, MAILBOX)
            pipe.hget(self.keys.meta, "epoch")
            pipe.hgetall(self.keys.sort_order)
            pipe.hgetall(self.keys.counts)
            raw, modseq, epoch, orders, raw_counts = await pipe.execute()
        if epoch is None:
            state = await self.state.state(MAILBOX)
        else:
            state = format_state(text(epoch), int(modseq or 0))
        records = {text(key): decode(value) for key, value in raw.items()}
        counts: dict[str, dict[str, int]] = {}
        for key, value in raw_counts.items():
            mailbox_id, _, kind = text(key).rpartition(":")
            counts.setdefault(mailbox_id, {})[kind] = int(value)
        return records, state, {text(k): int(v) for k, v in orders.items()}, counts

    async def load(self) -> dict[str, MailboxRecord]:
        raw = await self._client.hgetall(self.keys.mailboxes)
        return {text(key): decode(value) for key, value in raw.items()}

    async def replace(
        self, old: Mapping[str, MailboxRecord], new: Mapping[str, MailboxRecord], listing: str
    ) -> MailboxDiff:
        """Make the index hold ``new`` and log its difference from ``old``, atomically (the
        state change goes through the account's Journal).

        ``listing`` is a digest of the upstream listing ``new`` came from: the next sync that
        sees the same digest knows nothing changed without parsing the listing.
        """
        change = diff(old, new)
        journal = Journal(self.state)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.meta, LISTING_FIELD, listing)
            if change.destroyed:
                pipe.hdel(self.keys.mailboxes, *change.destroyed)
                pipe.hdel(self.keys.sort_order, *change.destroyed)
            written = [*change.created, *change.updated, *change.refreshed]
            if written:
                pipe.hset(self.keys.mailboxes, mapping={i: encode(new[i]) for i in written})
            await journal.log(
                pipe,
                MAILBOX,
                created=change.created,
                updated=change.updated,
                destroyed=change.destroyed,
            )
            journal.committed(await pipe.execute())
        return change

    async def meta(self, field: str) -> str | None:
        value = await self._client.hget(self.keys.meta, field)
        return None if value is None else text(value)

    async def metas(self, *names: str) -> list[str | None]:
        values = await self._client.hmget(self.keys.meta, list(names))
        return [None if value is None else text(value) for value in values]

    async def set_meta(self, field: str, value: str) -> None:
        await self._client.hset(self.keys.meta, field, value)

    async def sort_orders(self) -> dict[str, int]:
        raw = await self._client.hgetall(self.keys.sort_order)
        return {text(key): int(value) for key, value in raw.items()}

    async def set_sort_order(self, mailbox_id: str, value: int) -> None:
        journal = Journal(self.state)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.sort_order, mailbox_id, value)
            await journal.log(pipe, MAILBOX, updated=[mailbox_id])
            journal.committed(await pipe.execute())

    async def name_ids(self) -> dict[str, str]:
        raw = await self._client.hgetall(self.keys.mailbox_names)
        return {text(key): text(value) for key, value in raw.items()}

    async def set_name_ids(self, mapping: Mapping[str, str], removed: list[str]) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            if removed:
                pipe.hdel(self.keys.mailbox_names, *removed)
            if mapping:
                values: dict[EncodableT, EncodableT] = dict(mapping.items())
                pipe.hset(self.keys.mailbox_names, mapping=values)
            await pipe.execute()
