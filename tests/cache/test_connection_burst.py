"""A burst of commands larger than the client's connection pool waits for connections.

redis-py's default pool fails the command past its size (``MaxConnectionsError``), which the
gateway answers 503: every client reconnecting at once after a replica's drain would see
that. Each command here holds its connection for a moment (BLPOP on an empty list), so more
of them than the pool has are in flight together.
"""

from __future__ import annotations

import asyncio

import redis

from gateway.cache.connect import MAX_CONNECTIONS, redis_client
from tests.sentinel import SentinelSet

BURST = MAX_CONNECTIONS * 2 + 50


async def burst(url: str) -> list[object]:
    client = redis_client(url, timeout=10.0)
    try:
        return await asyncio.gather(
            *(client.blpop([f"jg:test:empty:{i}"], timeout=0.2) for i in range(BURST)),
            return_exceptions=True,
        )
    finally:
        await client.aclose()


def clients_seen(url: str) -> int:
    """Connections the server saw from this test at most: its connected_clients peak."""
    with redis.Redis.from_url(url) as plain:
        info = plain.info("clients")
        return int(info["connected_clients"])


async def test_a_burst_past_the_pool_waits_instead_of_failing(redis_url: str) -> None:
    results = await burst(redis_url)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert results == [None] * BURST


async def test_the_pool_stays_bounded_during_a_burst(redis_url: str) -> None:
    client = redis_client(redis_url, timeout=10.0)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, await asyncio.to_thread(clients_seen, redis_url))
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.gather(
            *(client.blpop([f"jg:test:empty:{i}"], timeout=0.3) for i in range(BURST))
        )
    finally:
        watcher.cancel()
        await client.aclose()
    # The pool's connections, plus the watcher's own one.
    assert MAX_CONNECTIONS // 2 < peak <= MAX_CONNECTIONS + 1


async def test_a_sentinel_master_waits_too(sentinels: SentinelSet) -> None:
    results = await burst(sentinels.url)
    assert [r for r in results if isinstance(r, BaseException)] == []
