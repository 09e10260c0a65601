"""Demand and watch leases in a real Redis (and a real Redis Cluster)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.cache.store import Store
from gateway.cache.watches import WatchStore
from tests.rediscluster import RedisClusterSet


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_url)
    try:
        yield redis
    finally:
        await redis.aclose()


def account() -> str:
    return "a" + secrets.token_hex(6)


async def test_a_lease_is_taken_only_with_demand_and_by_one_replica(client: Redis) -> None:
    store = WatchStore(client)
    a = account()
    assert await store.take(a, "r1", 5) is None  # nobody listens
    await store.heartbeat("r1", [a], 5)
    await store.heartbeat("r2", [a], 5)
    assert await store.has_demand(a)
    taken = await asyncio.gather(store.take(a, "r1", 5), store.take(a, "r2", 5))
    assert sum(lease is not None for lease in taken) == 1
    holder = "r1" if taken[0] is not None else "r2"
    assert await store.holder(a) == holder


async def test_renew_and_release_touch_only_the_holders_lease(client: Redis) -> None:
    store = WatchStore(client)
    a = account()
    await store.heartbeat("r1", [a], 5)
    first = await store.take(a, "r1", 0.2)
    assert first is not None
    assert await first.renew()
    await asyncio.sleep(0.4)  # expired: a successor takes it
    assert await store.holder(a) is None
    second = await store.take(a, "r2", 5)
    assert second is not None
    assert not await first.renew()
    await first.release()
    assert await store.holder(a) == "r2"
    assert await store.renew_all([first, second]) == [False, True]
    await second.release()
    assert await store.holder(a) is None


async def test_demand_ends_when_withdrawn_or_not_heartbeaten(client: Redis) -> None:
    store = WatchStore(client)
    a, b = account(), account()
    await store.heartbeat("r1", [a, b], 0.2)
    await store.heartbeat("r2", [a], 5)
    assert await store.demanded([a, b]) == {a, b}
    await store.withdraw("r2", a)
    await asyncio.sleep(0.4)  # r1 stopped heartbeating (died)
    assert await store.demanded([a, b]) == set()
    assert await store.take_many([a, b], "r2", 5) == {}


async def test_a_cluster_takes_renews_and_releases_across_slots(
    redis_cluster: RedisClusterSet,
) -> None:
    cluster = Store.from_url(redis_cluster.url)
    try:
        assert isinstance(cluster.client, RedisCluster)
        store = WatchStore(cluster.client)
        accounts = [account() for _ in range(12)]
        await store.heartbeat("r1", accounts, 5)
        assert await store.demanded(accounts) == set(accounts)
        leases = await store.take_many(accounts, "r1", 5)
        assert sorted(leases) == sorted(accounts)
        assert await store.take_many(accounts, "r2", 5) == {}
        assert await store.renew_all(list(leases.values())) == [True] * len(accounts)
        for lease in leases.values():
            await lease.release()
        assert [await store.holder(a) for a in accounts] == [None] * len(accounts)
    finally:
        await cluster.close()
