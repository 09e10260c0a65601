"""The Redis client the gateway shares across requests, and the server-wide secret."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterUnreachableError, RedisError, SlotNotCoveredError

from gateway.cache.changes import AccountState
from gateway.cache.connect import redis_client
from gateway.cache.emails import EmailStore
from gateway.cache.keys import SECRET, discovered
from gateway.cache.mailboxes import MailboxStore
from gateway.cache.timed import RedisObserver

# Where keyed hashes get their key: GATEWAY_SECRET, or Redis asked each time (see
# Store.server_secret), so every user of it reads the one value all replicas share.
SecretSource = Callable[[], Awaitable[bytes]]


def fixed_secret(value: bytes) -> SecretSource:
    """A secret the operator configured: the same octets every time, nothing asked."""

    async def configured() -> bytes:
        return value

    return configured


SECRET_BYTES = 32
# What a Redis that cannot be reached raises. redis-py's cluster client raises the last two,
# which are not RedisErrors; a CrossSlotTransactionError is a bug, not an outage, and is left out.
STORE_UNAVAILABLE: tuple[type[Exception], ...] = (
    RedisError,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
)


class Store:
    """Entry point to the gateway's Redis state; one per process, safe to share between tasks."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self.client = client

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = 5.0,
        observer: RedisObserver | None = None,
        sentinel_password: str | None = None,
    ) -> Store:
        """Connect lazily: nothing is sent until the first command. ``url`` names one server,
        a Sentinel-managed master or a Redis Cluster (see :mod:`gateway.cache.connect`).

        On a cluster every multi-key command, script and transaction (the lease fence's WATCH
        included) stays within one account's hash tag, so within one slot, as Redis Cluster
        requires; the server-wide secret is a key of its own, read and written alone.
        ``observer`` is told the duration of every round trip.
        """
        return cls(
            redis_client(
                url, timeout=timeout, observer=observer, sentinel_password=sentinel_password
            )
        )

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()

    async def server_secret(self, restore: bytes | None = None) -> bytes:
        """The key for keyed hashes, made once and then shared by every replica.

        Read afresh on every call, so replicas never disagree: were it cached, a replica
        started after Redis lost its data would make a new secret while running ones kept the
        old. When it is missing, ``restore`` (the value the caller last read) is written back,
        else a new random one: SET NX makes the first writer win, so callers agree, and after
        a loss account ids stay as they were if a replica that knew the secret asks first.
        """
        value = await self.client.get(SECRET)
        if not value:
            made = restore or secrets.token_bytes(SECRET_BYTES)
            await self.client.set(SECRET, made, nx=True)
            value = await self.client.get(SECRET)
        if not isinstance(value, bytes) or not value:
            raise RuntimeError("Redis did not keep the server secret")
        return value

    async def discovered(self, name: str) -> str | None:
        """The last value :meth:`remember` kept under ``name``."""
        value = await self.client.get(discovered(name))
        return value.decode() if isinstance(value, bytes) else None

    async def remember(self, name: str, value: str) -> None:
        """Keep a fact learnt from an upstream (JSON text), shared by every replica, so one
        starting while that upstream is down still knows the last answer."""
        await self.client.set(discovered(name), value.encode())

    def account(self, account_id: str) -> AccountState:
        return AccountState(self.client, account_id)

    def mailboxes(self, account_id: str) -> MailboxStore:
        """The account's mailbox index: what sync/ and translators read and write it by."""
        return MailboxStore(self.client, account_id)

    def emails(self, account_id: str) -> EmailStore:
        """The account's email index (and its writes: gateway.cache.index_batch)."""
        return EmailStore(self.client, account_id)
