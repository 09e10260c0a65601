"""The push hub on a real three-node Redis Cluster: sharded pub/sub (SPUBLISH/SSUBSCRIBE).

An account's channel carries its hash tag, so its messages travel only to the shard holding
the account's keys. Checked from outside with plain clients of each node: who is subscribed
where (PUBSUB SHARDNUMSUB, CLIENT LIST).
"""

from __future__ import annotations

import asyncio
import secrets
import time

import redis

from gateway.cache.keys import AccountKeys
from tests.push.harness import commit_elsewhere, commit_here, replica
from tests.push.test_hub import WAIT, until_changed
from tests.rediscluster import LOOPBACK, ClusterNodeServer, RedisClusterSet


def accounts_on_every_node(cluster: RedisClusterSet) -> dict[int, str]:
    """A fresh account per node port, whose keys (and channel) that node serves."""
    found: dict[int, str] = {}
    while len(found) < len(cluster.nodes):
        acc = "a" + secrets.token_hex(6)
        found.setdefault(cluster.owner(AccountKeys(acc).push_channel).port, acc)
    return found


def shard_subscribers(node: redis.Redis, channel: str) -> int:
    ((_, count),) = node.pubsub_shardnumsub(channel)
    return int(count)


async def test_commits_on_another_replica_reach_listeners_on_every_shard(
    redis_cluster: RedisClusterSet,
) -> None:
    by_port = accounts_on_every_node(redis_cluster)
    ports = [node.port for node in redis_cluster.nodes]
    async with replica(redis_cluster.url) as svc:
        async with (
            svc.push.listen(by_port[ports[0]], None, None) as s0,
            svc.push.listen(by_port[ports[1]], None, None) as s1,
            svc.push.listen(by_port[ports[2]], None, None) as s2,
        ):
            for node, sub in zip(redis_cluster.nodes, (s0, s1, s2), strict=True):
                channel = AccountKeys(sub.account_id).push_channel
                with node.client() as plain:
                    # Sharded: the owner node has one shard subscriber, no plain one.
                    assert shard_subscribers(plain, channel) == 1
                    assert plain.pubsub_numsub(channel) == [(channel.encode(), 0)]
                    # One pub/sub connection per shard for this replica.
                    assert len(plain.client_list(_type="pubsub")) == 1
            for sub in (s0, s1, s2):
                state = await commit_elsewhere(redis_cluster.url, sub.account_id, "Email", "e1")
                assert await sub.next(WAIT) == {sub.account_id: {"Email": state}}
        # The last listener of an account gone, its channel is let go.
        for node in redis_cluster.nodes:
            with node.client() as plain:
                channel = AccountKeys(by_port[node.port]).push_channel
                async with asyncio.timeout(WAIT):
                    while shard_subscribers(plain, channel):
                        await asyncio.sleep(0.05)


async def test_a_killed_shard_connection_is_resubscribed_and_resynced(
    redis_cluster: RedisClusterSet,
) -> None:
    by_port = accounts_on_every_node(redis_cluster)
    node = redis_cluster.nodes[1]
    acc = by_port[node.port]
    async with replica(redis_cluster.url) as svc, svc.push.listen(acc, None, None) as sub:
        resyncs = svc.metrics.push_resyncs._value.get()
        missed = await svc.store.account(acc).record("Thread", created=["t1"])
        assert await sub.next(0.3) is None
        with node.client() as plain:
            assert plain.execute_command("CLIENT KILL TYPE pubsub") == 1
        await until_changed(sub, "Thread", str(missed))
        assert svc.metrics.push_resyncs._value.get() > resyncs
        state = await commit_here(svc, acc, "Email", "e1")
        await until_changed(sub, "Email", state)
        with node.client() as plain:
            assert shard_subscribers(plain, AccountKeys(acc).push_channel) == 1


def move_slot(cluster: RedisClusterSet, slot: int, source: int, target: int) -> None:
    """Reshard ``slot`` from the node on port ``source`` to the one on ``target``, keys
    and all, as redis-cli --cluster reshard does (CLUSTER SETSLOT, MIGRATE).

    The nodes learn the new owner one by one, half a second apart, in port order of the
    cluster's list: while they disagree, the bus may subscribe where a node still thinks the
    slot lives (MOVED), or on the new owner before it knows (which then drops the channel
    when told); it must end up subscribed once, on the new owner."""
    nodes = {node.port: node for node in cluster.nodes}
    with nodes[source].client() as src, nodes[target].client() as dst:
        src_id = src.execute_command("CLUSTER MYID").decode()
        dst_id = dst.execute_command("CLUSTER MYID").decode()
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", LOOPBACK, target, "", 0, 5000, "KEYS", *keys)
        for node in cluster.nodes:
            with node.client() as plain:
                plain.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
            time.sleep(0.5)


async def wait_subscribed(node: ClusterNodeServer, channel: str) -> None:
    with node.client() as plain:
        async with asyncio.timeout(3 * WAIT):
            while shard_subscribers(plain, channel) != 1:
                await asyncio.sleep(0.05)


async def test_a_resharded_slot_takes_its_listeners_along(redis_cluster: RedisClusterSet) -> None:
    """Resharding moves an account's slot to another primary: the old node ends the shard
    subscription, the bus subscribes on the new owner and resyncs; changes keep arriving."""
    by_port = accounts_on_every_node(redis_cluster)
    home, away = redis_cluster.nodes[0], redis_cluster.nodes[2]
    acc = by_port[home.port]
    channel = AccountKeys(acc).push_channel
    with home.client() as plain:
        slot = int(plain.execute_command("CLUSTER KEYSLOT", channel))
    async with replica(redis_cluster.url) as svc, svc.push.listen(acc, None, None) as sub:
        before = await commit_here(svc, acc, "Email", "e1")
        await until_changed(sub, "Email", before)
        resyncs = svc.metrics.push_resyncs._value.get()
        try:
            await asyncio.to_thread(move_slot, redis_cluster, slot, home.port, away.port)
            await wait_subscribed(away, channel)
            async with asyncio.timeout(WAIT):  # the move is followed by a resync
                while svc.metrics.push_resyncs._value.get() == resyncs:
                    await asyncio.sleep(0.05)
            state = await commit_elsewhere(redis_cluster.url, acc, "Email", "e2")
            await until_changed(sub, "Email", state)
        finally:
            # Give the slot back: the cluster is shared by the session's tests.
            await asyncio.to_thread(move_slot, redis_cluster, slot, away.port, home.port)
        await wait_subscribed(home, channel)
        state = await commit_elsewhere(redis_cluster.url, acc, "Mailbox", "m1")
        await until_changed(sub, "Mailbox", state)
