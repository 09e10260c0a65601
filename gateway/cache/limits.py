"""Limits on concurrent requests per account, enforced across every replica.

``maxConcurrentRequests`` and ``maxConcurrentUpload`` (RFC 8620 2) are promises about the
server, not one process: a client talking to four replicas behind a load balancer must meet the
same limit. Each request in flight is a member of a sorted set scored by its start time; a
member older than the lease is taken to belong to a crashed process and no longer counts.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from gateway.cache.keys import AccountKeys

log = logging.getLogger(__name__)

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


class ConcurrencyLimiter:
    """Admits at most ``limit`` requests of one ``kind`` per account at a time."""

    def __init__(
        self, client: Redis | RedisCluster, kind: str, limit: int, lease_seconds: float
    ) -> None:
        self._client = client
        self._admit = client.register_script(_ADMIT)  # EVALSHA: the script text is sent once
        self._kind = kind
        self.limit = limit
        self._lease_ms = int(lease_seconds * 1000)

    @contextlib.asynccontextmanager
    async def admit(self, account_id: str) -> AsyncIterator[None]:
        key = AccountKeys(account_id).inflight(self._kind)
        token = secrets.token_hex(8)
        admitted = await self._admit(keys=[key], args=[self.limit, self._lease_ms, token])
        if not admitted:
            raise TooManyConcurrent(self._kind)
        try:
            yield
        finally:
            # The answer is ready (and may report upstream changes): a failed release must not
            # replace it. The lease frees the slot anyway.
            try:
                await self._client.zrem(key, token)
            except (RedisError, RedisClusterException):
                log.warning("could not release a %s slot; its lease will expire", self._kind)
