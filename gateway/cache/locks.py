"""Short leases that serialise work on one account across gateway processes.

A lease is ``SET key token NX PX ttl``; only the holder's token releases it, and a holder that
dies loses it when the ttl passes, so a crashed replica never blocks an account for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
POLL_SECONDS = 0.02


class LockTimeout(Exception):
    """Another process held the lease for longer than we were willing to wait."""


@contextlib.asynccontextmanager
async def lease(
    client: Redis | RedisCluster, key: str, *, ttl: float, wait: float
) -> AsyncIterator[None]:
    token = secrets.token_hex(8)
    deadline = time.monotonic() + wait
    while not await client.set(key, token, nx=True, px=int(ttl * 1000)):
        if time.monotonic() >= deadline:
            raise LockTimeout(key)
        await asyncio.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        await client.register_script(_RELEASE)(keys=[key], args=[token])
