"""The account's stored Identities (RFC 8621 6) as Redis keeps them, and their change log.

Redis is the cache: where the upstream keeps IMAP METADATA the identities live there, one
server entry each, and after Redis lost its data they are read back from it. ``loaded`` says
whether the cache holds them at all: a hash that is merely empty cannot tell "no identities"
from "not read since Redis was emptied". Without METADATA Redis is the only copy.

The default identity (the user's own address) is computed, not stored; a record with its id
holds only what the user changed of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.cache.changes import AccountState, format_state
from gateway.cache.codec import octets, pack, text, unpack
from gateway.cache.journal import Journal
from gateway.cache.keys import AccountKeys

IDENTITY = "Identity"
# Meta field present while the identities hash holds every stored identity of the account.
LOADED_FIELD = "identities-loaded"

# RFC 8621 6.1 EmailAddress objects: {"name": str | None, "email": str}.
EmailAddresses = list[dict[str, Any]]


@dataclass(frozen=True)
class IdentityRecord:
    """One Identity (RFC 8621 6.1), as stored."""

    id: str
    name: str
    email: str
    reply_to: EmailAddresses | None
    bcc: EmailAddresses | None
    text_signature: str
    html_signature: str
    may_delete: bool


_FIELDS = tuple(f.name for f in fields(IdentityRecord))


def encode(record: IdentityRecord) -> bytes:
    return pack(list(asdict(record).values()))


def decode(data: bytes) -> IdentityRecord:
    return IdentityRecord(**dict(zip(_FIELDS, unpack(data), strict=True)))


@dataclass(frozen=True)
class Snapshot:
    """The stored identities and the Identity state, read together. ``loaded`` False: the cache
    was never filled, Redis lost it, or a write's outcome upstream is unknown; ``records`` is
    then not to be trusted."""

    records: dict[str, IdentityRecord]
    state: str
    loaded: bool


class IdentityStore:
    """Reads and writes the identity part of one account's index."""

    def __init__(self, client: Redis | RedisCluster, account_id: str) -> None:
        self._client = client
        self.keys = AccountKeys(account_id)
        self.state = AccountState(client, account_id)

    async def snapshot(self) -> Snapshot:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.identities)
            pipe.hget(self.keys.meta, LOADED_FIELD)
            pipe.hget(self.keys.state, IDENTITY)
            pipe.hget(self.keys.meta, "epoch")
            raw, loaded, modseq, epoch = await pipe.execute()
        if epoch is None:
            state = await self.state.state(IDENTITY)
        else:
            state = format_state(text(epoch), int(modseq or 0))
        records = {text(key): decode(octets(value)) for key, value in raw.items()}
        return Snapshot(records, state, loaded is not None)

    async def fill(self, records: Mapping[str, IdentityRecord]) -> None:
        """The cache holds exactly ``records``, read from the upstream's copy. No change is
        logged: they are what the account held all along, and a client's states from before
        Redis lost its data are of another epoch anyway."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.identities)
            if records:
                pipe.hset(
                    self.keys.identities,
                    mapping={key: encode(record) for key, record in records.items()},
                )
            pipe.hset(self.keys.meta, LOADED_FIELD, "1")
            await pipe.execute()

    async def mark_loaded(self) -> None:
        """The hash is the whole copy as it stands (an upstream without METADATA: Redis is
        the only copy, nothing to read back)."""
        await self._client.hset(self.keys.meta, LOADED_FIELD, "1")

    async def put(self, record: IdentityRecord, *, created: bool) -> None:
        """Store ``record`` (new when ``created``) and log it, atomically."""
        journal = Journal(self.state)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.identities, record.id, encode(record))
            change = {"created" if created else "updated": [record.id]}
            await journal.log(pipe, IDENTITY, **change)
            journal.committed(await pipe.execute())

    async def remove(self, identity_id: str) -> None:
        """Forget the record of ``identity_id`` and log its destruction, atomically."""
        journal = Journal(self.state)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.identities, identity_id)
            await journal.log(pipe, IDENTITY, destroyed=[identity_id])
            journal.committed(await pipe.execute())

    async def forget(self) -> None:
        """Drop the cache, so the next read fills it from the upstream's copy again (after a
        write whose outcome upstream is unknown)."""
        await self._client.hdel(self.keys.meta, LOADED_FIELD)
