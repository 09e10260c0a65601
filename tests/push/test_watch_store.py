"""Demand and watch leases in a real Redis (and a real Redis Cluster)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.cache.keys import AccountKeys
from gateway.cache.push_subscriptions import login_key
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


async def holder(client: Redis | RedisCluster, account_id: str) -> str | None:
    """The replica holding the account's lease, read from Redis itself."""
    value = await client.get(AccountKeys(account_id).push_watch)
    return None if value is None else value.decode().rpartition(":")[0]


async def test_a_lease_is_taken_only_with_demand_and_by_one_replica(client: Redis) -> None:
    store = WatchStore(client)
    a = account()
    assert await store.take_many([a], "r1", 5) == {}  # nobody listens
    assert await store.wanted([a]) == set()
    assert await store.heartbeat("r1", [a], 5) == {a}  # nobody holds the lease
    await store.heartbeat("r2", [a], 5)
    assert await store.demanded([a]) == {a}
    assert await store.wanted([a]) == {a}
    taken = await asyncio.gather(store.take_many([a], "r1", 5), store.take_many([a], "r2", 5))
    assert sum(len(t) for t in taken) == 1
    assert await holder(client, a) == ("r1" if taken[0] else "r2")
    assert await store.heartbeat("r1", [a], 5) == set()  # held now
    assert await store.wanted([a]) == set()


async def test_renew_and_release_touch_only_the_holders_lease(client: Redis) -> None:
    store = WatchStore(client)
    a = account()
    await store.heartbeat("r1", [a], 5)
    first = (await store.take_many([a], "r1", 0.2))[a]
    assert await store.renew_all([first]) == [True]
    await asyncio.sleep(0.4)  # expired: a successor takes it
    assert await holder(client, a) is None
    second = (await store.take_many([a], "r2", 5))[a]
    assert await store.renew_all([first]) == [False]
    await first.release()
    assert await holder(client, a) == "r2"
    assert await store.renew_all([first, second]) == [False, True]
    await second.release()
    assert await holder(client, a) is None


async def test_demand_ends_when_withdrawn_or_not_heartbeaten(client: Redis) -> None:
    store = WatchStore(client)
    a, b = account(), account()
    await store.heartbeat("r1", [a, b], 0.2)
    await store.heartbeat("r2", [a], 5)
    assert await store.demanded([a, b]) == {a, b}
    await store.withdraw("r2", a)
    await asyncio.sleep(0.4)  # r1 stopped heartbeating (died)
    assert await store.demanded([a, b]) == set()
    assert await store.wanted([a, b]) == set()
    assert await store.take_many([a, b], "r2", 5) == {}
    # The next heartbeat of the zset drops the dead replica's entry.
    await store.heartbeat("r3", [a], 5)
    assert await client.zrange(AccountKeys(a).push_demand, 0, -1) == [b"r3"]


async def test_a_cluster_takes_renews_and_releases_across_slots(
    redis_cluster: RedisClusterSet,
) -> None:
    cluster = Store.from_url(redis_cluster.url)
    try:
        assert isinstance(cluster.client, RedisCluster)
        store = WatchStore(cluster.client)
        accounts = [account() for _ in range(12)]
        assert await store.heartbeat("r1", accounts, 5) == set(accounts)
        assert await store.demanded(accounts) == set(accounts)
        assert await store.wanted(accounts) == set(accounts)
        leases = await store.take_many(accounts, "r1", 5)
        assert sorted(leases) == sorted(accounts)
        assert await store.take_many(accounts, "r2", 5) == {}
        assert await store.renew_all(list(leases.values())) == [True] * len(accounts)
        for lease in leases.values():
            await lease.release()
        assert [await holder(cluster.client, a) for a in accounts] == [None] * len(accounts)
    finally:
        await cluster.close()


async def _eval_calls(client: Redis | RedisCluster) -> int:
    """EVAL commands the server(s) ran so far, from INFO commandstats."""
    if isinstance(client, RedisCluster):
        nodes = await client.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
        return sum(int(node.get("cmdstat_eval", {}).get("calls", 0)) for node in nodes.values())
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_eval", {}).get("calls", 0))


@pytest.mark.parametrize("kind", ["single", "cluster"])
async def test_free_subscribed_sends_the_script_once_and_survives_a_script_flush(
    request: pytest.FixtureRequest, kind: str
) -> None:
    """Review L10: a full round asks about up to a page of accounts each tick, so the script
    goes by its sha (EVALSHA), not its text; a flushed script cache is loaded again."""
    if kind == "single":
        store = Store.from_url(request.getfixturevalue("redis_url"))
    else:
        cluster: RedisClusterSet = request.getfixturevalue("redis_cluster")
        store = Store.from_url(cluster.url)
    try:
        client = store.client
        watches = WatchStore(client)
        named, held, bare = account(), account(), account()
        for a in (named, held):
            await client.set(login_key(a), "alice")
        await watches.take_free([held], "r1", 5)
        await client.script_flush()
        before = await _eval_calls(client)
        assert await watches.free_subscribed([named, held, bare]) == {named}
        assert await watches.free_subscribed([named, held, bare]) == {named}
        assert await _eval_calls(client) == before
    finally:
        await store.close()
