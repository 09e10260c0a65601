"""Short leases that serialise work on one account across gateway processes.

A lease is ``SET key token NX PX ttl``; only the holder's token releases it, and a holder that
dies loses it when the ttl passes, so a crashed replica never blocks an account for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster

from gateway.cache.keys import AccountKeys

# A lease held by the value it was set to (locks here, watch leases in watches.py): pushed back
# or let go only by its holder. KEYS: the lease. ARGV: the holder's value (and the ttl in ms).
RENEW_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
POLL_SECONDS = 0.02


class LockTimeout(Exception):
    """Another process held the lease for longer than we were willing to wait."""


class LeaseLost(LockTimeout):
    """The lease expired while held (work outlasted its ttl) and may be another's now."""


class Lease:
    """A held lease; long work renews it as it goes."""

    def __init__(self, client: Redis | RedisCluster, key: str, token: str, ttl: float) -> None:
        self._client = client
        self._key = key
        self._token = token
        self._ttl = ttl

    @property
    def key(self) -> str:
        return self._key

    @property
    def token(self) -> str:
        """The holder's value: write scripts check it themselves (gateway.cache.index_batch)."""
        return self._token

    async def fence(self, pipe: Pipeline | ClusterPipeline) -> None:
        """Make the transaction ``pipe`` is about to queue commit only while the lease is ours.

        WATCHes the lease key and checks its token; EXEC then fails (WatchError) if the
        lease changed hands in between. Call before queueing anything; starts MULTI.

        On a cluster ``pipe`` must be transactional (``pipeline(transaction=True)``): redis-py
        then sends WATCH, the read and MULTI/EXEC on one connection to the node serving the
        lease key's slot, and refuses any later key of another slot (CrossSlotTransactionError).
        The lease key carries the account's hash tag, like everything its holder writes: the
        cluster specification allows multi-key work "as long as all of the keys involved in a
        single command execution (or whole transaction, or Lua script execution) belong to the
        same hash slot" (https://redis.io/docs/latest/operate/oss_and_stack/reference/
        cluster-spec/, "Hash tags").
        """
        await pipe.watch(self._key)
        if await pipe.get(self._key) != self._token.encode():
            await pipe.reset()  # type: ignore[no-untyped-call]
            raise LeaseLost(self._key)
        pipe.multi()  # type: ignore[no-untyped-call]

    async def renew(self) -> None:
        """Push the expiry back a full ttl; LeaseLost if the lease is no longer ours."""
        renewed = await self._client.register_script(RENEW_IF_OURS)(
            keys=[self._key], args=[self._token, int(self._ttl * 1000)]
        )
        if not renewed:
            raise LeaseLost(self._key)


@contextlib.asynccontextmanager
async def lease(
    client: Redis | RedisCluster, key: str, *, ttl: float, wait: float
) -> AsyncIterator[Lease]:
    token = secrets.token_hex(8)
    deadline = time.monotonic() + wait
    while not await client.set(key, token, nx=True, px=int(ttl * 1000)):
        if time.monotonic() >= deadline:
            raise LockTimeout(key)
        await asyncio.sleep(POLL_SECONDS)
    try:
        yield Lease(client, key, token, ttl)
    finally:
        await client.register_script(RELEASE_IF_OURS)(keys=[key], args=[token])


class IndexWork(enum.Enum):
    """Work on an account's index that one process at a time may do, across replicas; the
    value names the lease key."""

    # The email index: catch-up (a first sync of a large folder included) and flag writes.
    EMAILS = "emails"
    # The mailbox index: a listing (within the command timeout), then Redis writes.
    MAILBOXES = "mailboxes"


# (ttl, wait) per kind of work: the ttl longer than the work can take between renewals.
_INDEX_LEASES = {IndexWork.EMAILS: (600.0, 60.0), IndexWork.MAILBOXES: (180.0, 20.0)}


def index_lease(
    client: Redis | RedisCluster, keys: AccountKeys, work: IndexWork
) -> AbstractAsyncContextManager[Lease]:
    """Hold the account's lease for ``work``; LockTimeout when another holds it too long."""
    ttl, wait = _INDEX_LEASES[work]
    return lease(client, keys.lock(work.value), ttl=ttl, wait=wait)
