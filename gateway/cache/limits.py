"""Limits on concurrent requests per account: fair and cheap in each process, enforced across
every replica.

``maxConcurrentRequests`` and ``maxConcurrentUpload`` (RFC 8620 2) are promises about the
server, not one process: a client talking to four replicas (or worker processes) behind a load
balancer must meet the same limit. Each request in flight is a member of a sorted set in Redis
scored by its start time; a member older than the lease is taken to belong to a crashed process
and no longer counts.

Before Redis is asked, each process keeps its own count per account. A request beyond what the
cluster-wide limit could ever admit (this process alone already holds ``limit`` of the
account's slots) never reaches Redis: it waits in a FIFO queue for one of them, up to
``ADMISSION_WAIT_SECONDS``, and a slot given back goes straight to the oldest waiter, so a
client that keeps resending cannot overtake one that waits and nobody starves. Only after
that wait, or when the account's queue (``QUEUE_PER_SLOT`` waiters per slot) or the process's
(``MAX_QUEUED``) is full, does the request get the limit error (RFC 8620 3.6.1, 429 with
Retry-After): decided in memory, without a Redis command, so a flood of retries costs the
process little and Redis nothing. A waiter whose client goes away leaves the queue. What
passes the local count takes a member of the Redis set; when other processes hold the rest
of the slots, it asks again every ``REDIS_RETRY_SECONDS`` until its wait ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from gateway.cache.keys import AccountKeys

log = logging.getLogger(__name__)

# How long a request waits for a slot before the limit error: well within any client's patience.
ADMISSION_WAIT_SECONDS = 2.0
# Waiters per account and slot, and in the whole process (every account, every kind).
QUEUE_PER_SLOT = 8
MAX_QUEUED = 10_000
# How often a request that passed the local count asks Redis again while other processes hold
# the account's slots.
REDIS_RETRY_SECONDS = 0.05

# KEYS: the in-flight set. ARGV: limit, lease (ms), token. Returns 1 when admitted.
_ADMIT = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], ms, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


class TooManyConcurrent(Exception):
    """The account already has as many requests of this kind in flight as allowed."""


@dataclass
class _Slots:
    """One account's slots in this process: how many are held, and who waits for one."""

    held: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)


class ConcurrencyLimiter:
    """Admits at most ``limit`` requests of one ``kind`` per account at a time."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        kind: str,
        limit: int,
        lease_seconds: float,
        *,
        wait_seconds: float = ADMISSION_WAIT_SECONDS,
    ) -> None:
        self._client = client
        self._admit = client.register_script(_ADMIT)  # EVALSHA: the script text is sent once
        self._kind = kind
        self.limit = limit
        self._lease_ms = int(lease_seconds * 1000)
        self._wait = wait_seconds
        self._accounts: dict[str, _Slots] = {}
        self._queued = 0

    @property
    def queue_bound(self) -> int:
        """Requests of one account that may wait in this process for a slot."""
        return QUEUE_PER_SLOT * self.limit

    def queued(self, account_id: str) -> int:
        """Requests of ``account_id`` waiting in this process (for metrics and tests)."""
        slots = self._accounts.get(account_id)
        return len(slots.waiters) if slots else 0

    @contextlib.asynccontextmanager
    async def admit(self, account_id: str) -> AsyncIterator[None]:
        deadline = time.monotonic() + self._wait
        await self._hold_locally(account_id, deadline)
        try:
            key = AccountKeys(account_id).inflight(self._kind)
            token = secrets.token_hex(8)
            await self._hold_in_redis(key, token, deadline)
            try:
                yield
            finally:
                # The answer is ready (and may report upstream changes): a failed release must
                # not replace it. The lease frees the slot anyway.
                try:
                    await self._client.zrem(key, token)
                except (RedisError, RedisClusterException):
                    log.warning("could not release a %s slot; its lease will expire", self._kind)
        finally:
            self._release_locally(account_id)

    async def _hold_locally(self, account_id: str, deadline: float) -> None:
        """One of the account's ``limit`` slots of this process, waiting in FIFO order."""
        slots = self._accounts.setdefault(account_id, _Slots())
        if slots.held < self.limit and not slots.waiters:
            slots.held += 1
            return
        if len(slots.waiters) >= self.queue_bound or self._queued >= MAX_QUEUED:
            self._forget_if_idle(account_id, slots)
            raise TooManyConcurrent(self._kind)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slots.waiters.append(turn)
        self._queued += 1
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await turn  # _release_locally hands the slot over, held count unchanged
        except TimeoutError:
            if turn.done() and not turn.cancelled():
                return  # handed over just as the wait ended: take it
            raise TooManyConcurrent(self._kind) from None
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release_locally(account_id)  # pass the slot on to the next waiter
            raise
        finally:
            self._queued -= 1
            with contextlib.suppress(ValueError):
                slots.waiters.remove(turn)
            self._forget_if_idle(account_id, slots)

    def _release_locally(self, account_id: str) -> None:
        slots = self._accounts[account_id]
        while slots.waiters:
            turn = slots.waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        slots.held -= 1
        self._forget_if_idle(account_id, slots)

    def _forget_if_idle(self, account_id: str, slots: _Slots) -> None:
        if slots.held == 0 and not slots.waiters and self._accounts.get(account_id) is slots:
            del self._accounts[account_id]

    async def _hold_in_redis(self, key: str, token: str, deadline: float) -> None:
        """A member of the cross-replica set; asked again while other processes hold the
        account's slots, until the wait ends."""
        while not await self._admit(keys=[key], args=[self.limit, self._lease_ms, token]):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TooManyConcurrent(self._kind)
            await asyncio.sleep(min(REDIS_RETRY_SECONDS, left))
