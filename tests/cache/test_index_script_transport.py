"""The index script's op list travels packed (one msgpack argument): every value arrives as
redis-py would have sent it, whatever it holds, however long the batch.

Run on a single Redis and on the 3-node cluster alike; what was written is read back with a
plain client, and the expected wire form of a value is redis-py's own Encoder's.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import msgpack
import pytest
from redis._parsers.encoders import Encoder
from redis.exceptions import DataError
from redis.typing import EncodableT

from gateway.cache.emails import EMAIL, EmailStore
from gateway.cache.index_script import OP_ARGS, OpRecorder, pack_ops
from gateway.cache.locks import LeaseLost, lease
from gateway.cache.store import Store
from gateway.sync.index_writer import IndexWriter, NewCopy
from tests.rediscluster import RedisClusterSet

# Values a batch may carry: NULs and octets that are no UTF-8, empty strings, text beyond
# ASCII, integers beyond a double's 53 bits and beyond 64 bits, negative ones, floats.
ODD: list[EncodableT] = [
    b"a\x00b",
    b"\xff\xfe\x00",
    b"",
    "",
    "caf\u00e9 \u2603",
    2**53 + 1,
    2**80,
    -(2**70),
    0,
    -1,
    1.5,
    1e300,
    bytearray(b"ba"),
    memoryview(b"mv"),
    "x" * 70_000,
]


@pytest.fixture(params=["single", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "single":
        url: str = request.getfixturevalue("redis_url")
    else:
        cluster: RedisClusterSet = request.getfixturevalue("redis_cluster")
        url = cluster.url
    store = Store.from_url(url)
    yield store
    await store.close()


def emails_of(store: Store) -> EmailStore:
    return EmailStore(store.client, "a" + secrets.token_hex(4))


def test_packed_values_are_the_octets_redis_py_would_send() -> None:
    encoder = Encoder("utf-8", "strict", False)
    unpacked = msgpack.unpackb(pack_ops(ODD), raw=True)
    assert unpacked == [bytes(encoder.encode(v)) for v in ODD]


@pytest.mark.parametrize("value", [True, None, 1j, object()])
def test_a_value_redis_py_refuses_is_refused(value: object) -> None:
    with pytest.raises(DataError):
        pack_ops(["a", value])  # type: ignore[list-item]


async def test_odd_values_reach_redis_unchanged(store: Store) -> None:
    emails = emails_of(store)
    keys = emails.keys
    ops = OpRecorder(keys)
    fields = {f"f{n}": value for n, value in enumerate(ODD)}
    ops.hset(keys.threads, fields)
    ops.hset(keys.threads, {b"\x00field": b"", "": b"empty name"})
    ops.zadd(keys.dated("m1"), {b"\x00m": 2**80, "big": 2**53 + 1, "f": 1.5, "": -1})
    ops.hincrby(keys.counts, "c", 2**62)
    ops.hincrby(keys.counts, "c", -(2**61))
    ops.sadd(keys.uid_buckets("m1"), 0, b"\x00", "")
    assert await ops.run(store.client, None) == []
    encoder = Encoder("utf-8", "strict", False)
    got = await store.client.hgetall(keys.threads)
    assert got == {
        **{f"f{n}".encode(): bytes(encoder.encode(v)) for n, v in enumerate(ODD)},
        b"\x00field": b"",
        b"": b"empty name",
    }
    dated = await store.client.zrange(keys.dated("m1"), 0, -1, withscores=True)
    assert dated == [(b"", -1.0), (b"f", 1.5), (b"big", float(2**53)), (b"\x00m", 2.0**80)]
    assert await store.client.hget(keys.counts, "c") == str(2**62 - 2**61).encode()
    assert await store.client.smembers(keys.uid_buckets("m1")) == {b"0", b"\x00", b""}


async def test_a_batch_longer_than_one_op_and_megabytes_long_arrives_whole(store: Store) -> None:
    emails = emails_of(store)
    keys = emails.keys
    ops = OpRecorder(keys)
    # Split into ops of at most OP_ARGS arguments (Lua's unpack() has a C stack limit).
    many = {f"e{n}": f"v{n}" for n in range(OP_ARGS * 3 + 7)}
    ops.hset(keys.threads, many)
    ops.zadd(keys.dated(None), {f"e{n}": n for n in range(OP_ARGS * 2 + 1)})
    ops.hdel(keys.threads, *(f"e{n}" for n in range(0, OP_ARGS * 3, 2)))
    # And a few megabytes in all.
    big = {f"b{n}": bytes([n]) * 500_000 for n in range(8)}
    ops.hset(keys.thread_subjects, big)
    # Many keys: their KEYS indexes go as strings of several digits.
    for n in range(300):
        ops.hset(keys.uid_bucket("m1", n), {n: f"e{n}"})
    assert await ops.run(store.client, None) == []
    kept = {k: v for n, (k, v) in enumerate(many.items()) if n % 2 or n >= OP_ARGS * 3}
    assert await store.client.hgetall(keys.threads) == {
        k.encode(): v.encode() for k, v in kept.items()
    }
    assert await store.client.zcard(keys.dated(None)) == OP_ARGS * 2 + 1
    assert await store.client.hgetall(keys.thread_subjects) == {
        k.encode(): v for k, v in big.items()
    }
    assert await store.client.hget(keys.uid_bucket("m1", 299), "299") == b"e299"


async def test_the_change_log_of_a_packed_batch_answers_epoch_and_modseq(store: Store) -> None:
    emails = emails_of(store)
    ops = OpRecorder(emails.keys)
    ops.hset(emails.keys.threads, {"t1": "x"})
    ops.log(EMAIL, "n", "email-floor", ["c", "e1", "c", "e2", "u", "e1"])
    replies = await ops.run(store.client, None)
    assert replies is not None and len(replies) == 1
    epoch, modseq = replies[0]
    assert epoch == await store.client.hget(emails.keys.meta, "epoch")
    assert modseq == 3
    assert await store.client.zrange(emails.keys.changed(EMAIL), 0, -1) == [b"e2", b"e1"]


def copies(first: int, count: int) -> list[NewCopy]:
    return [NewCopy(u, f"e{u}", [], u, 10, f"t{u}") for u in range(first, first + count)]


async def test_a_script_left_running_is_applied_before_the_writers_next_read(store: Store) -> None:
    emails = emails_of(store)
    async with lease(store.client, emails.keys.lock("emails"), ttl=60, wait=1) as held:
        writer = IndexWriter(emails, held)
        created = await writer.add_copies("m1", copies(1, 300), ahead=True)
        assert created == [f"e{u}" for u in range(1, 301)]
        # The next page reads what the previous one wrote (its records): same ids again are
        # copies of known emails, not new ones.
        again = await writer.add_copies("m1", copies(1, 300), ahead=True)
        assert again == []
        await writer.add_copies("m1", copies(301, 200), ahead=True)
        await writer.settle()
    assert [c.data_type for c in writer.changes] == [EMAIL, "Thread", "Mailbox"] * 2
    assert len(await emails.all_ids()) == 500
    assert await store.client.hget(emails.keys.uid_bucket("m1", 3), "500") == b"e500"


async def test_a_lease_lost_under_a_running_script_is_raised_by_settle(store: Store) -> None:
    emails = emails_of(store)
    key = emails.keys.lock("emails")
    async with lease(store.client, key, ttl=60, wait=1) as held:
        writer = IndexWriter(emails, held)
        await store.client.set(key, "someone-else")
        await writer.add_copies("m1", copies(1, 10), ahead=True)
        with pytest.raises(LeaseLost):
            await writer.settle()
        # A later call does not raise it again: it was handed over once.
        await writer.settle()
        await store.client.set(key, held.token)
    assert await emails.all_ids() == []
    assert await store.client.exists(emails.keys.uid_bucket("m1", 0)) == 0
    assert writer.changes == []


async def test_an_abandoned_script_leaves_its_batch_whole_or_absent(store: Store) -> None:
    emails = emails_of(store)
    async with lease(store.client, emails.keys.lock("emails"), ttl=60, wait=1) as held:
        writer = IndexWriter(emails, held)
        await writer.add_copies("m1", copies(1, 200), ahead=True)
        await writer.abandon()
        await writer.settle()  # nothing left to wait for
    written = len(await emails.all_ids())
    uids = await store.client.hlen(emails.keys.uid_bucket("m1", 0))
    assert (written, uids) in ((0, 0), (200, 127))
