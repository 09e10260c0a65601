"""An index batch is one Lua script: all or nothing, fenced by the lease, one round trip.

Run on a single Redis and on the 3-node cluster alike (the ``client`` fixture is both); what
was written is read back with a plain client, never through the code under test.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import ResponseError

from gateway.cache.changes import CannotCalculateChanges, floor_field
from gateway.cache.chunked_set import directory
from gateway.cache.emails import EMAIL, THREAD, EmailStore, ThreadStats
from gateway.cache.index_batch import index_batch
from gateway.cache.index_format import ensure_current
from gateway.cache.locks import LeaseLost, lease
from gateway.cache.store import Store
from gateway.cache.thread_table import ref_hash
from gateway.sync.index_writer import IndexWriter, NewCopy
from gateway.sync.threads import ref_key
from tests.rediscluster import RedisClusterSet

# The commands each test's client sent, by name (gateway.cache.timed's observer).
seen: list[str] = []


@pytest.fixture(params=["single", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "single":
        url: str = request.getfixturevalue("redis_url")
    else:
        cluster: RedisClusterSet = request.getfixturevalue("redis_cluster")
        url = cluster.url
    seen.clear()
    store = Store.from_url(url, observer=lambda name, _t, _f: seen.append(name))
    yield store
    await store.close()


def emails_of(store: Store) -> EmailStore:
    return EmailStore(store.client, "a" + secrets.token_hex(4))


async def test_a_batch_is_one_script_round_trip_with_its_change_log(store: Store) -> None:
    emails = emails_of(store)
    async with lease(store.client, emails.keys.lock("emails"), ttl=60, wait=1) as held:
        writer = IndexWriter(emails, held)
        await writer.add_copies("m1", [NewCopy(1, "e1", [], 1, 10, "t1")])  # loads the script
        seen.clear()
        await writer.add_copies(
            "m1", [NewCopy(uid, f"e{uid}", [], uid, 10, f"t{uid}") for uid in range(2, 502)]
        )
        # The reads the writer needs (records and threads: scripts finding their buckets),
        # then ONE script: no WATCH, no MULTI (m1 already has its number: no round trip).
        assert seen == ["EVALSHA", "EVALSHA", "EVALSHA"]
    changes = await emails.state.changes(EMAIL, f"{await emails.state.epoch()}-0", None)
    assert sorted(changes.created) == sorted(f"e{u}" for u in range(1, 502))
    assert [c.data_type for c in writer.changes[3:]] == [EMAIL, THREAD, "Mailbox"]
    assert writer.changes[3].state == await emails.state.state(EMAIL)


async def test_a_batch_with_one_failing_op_writes_nothing(store: Store) -> None:
    emails = emails_of(store)
    keys = emails.keys
    await store.client.set(keys.counts, "not a hash")  # a deliberately wrong-type key
    with pytest.raises(ResponseError):
        async with index_batch(emails) as batch:
            batch.map_uids("m1", {1: "e1"})
            batch.date("e1", 5, "m1")
            batch.put_threads({"t1": ThreadStats([[5, "e1"]], {"m1": 1}, 0)})
            batch.add_counts({("m1", "e"): 1})
            batch.log(EMAIL, created=["e1"])
    assert (
        await store.client.exists(
            keys.uid_bucket("m1", 0), keys.uid_buckets("m1"), directory(keys.dated("m1"))
        )
        == 0
    )
    assert await store.client.hget(keys.state, EMAIL) is None
    assert await emails.thread_count() == 0
    await store.client.delete(keys.counts)

    await store.client.hset(keys.counts, "m1:e", "many")  # a counter that is no integer
    with pytest.raises(ResponseError):
        async with index_batch(emails) as batch:
            batch.map_uids("m1", {1: "e1"})
            batch.add_counts({("m1", "e"): 1})
    assert await store.client.exists(keys.uid_bucket("m1", 0)) == 0


async def test_a_lost_lease_commits_nothing(store: Store) -> None:
    emails = emails_of(store)
    key = emails.keys.lock("emails")
    async with lease(store.client, key, ttl=60, wait=1) as held:
        async with index_batch(emails, held) as batch:
            batch.map_uids("m1", {1: "e1"})
            batch.log(EMAIL, created=["e1"])
        await store.client.set(key, "someone-else")
        with pytest.raises(LeaseLost):
            async with index_batch(emails, held) as batch:
                batch.map_uids("m1", {2: "e2"})
                batch.log(EMAIL, created=["e2"])
        await store.client.set(key, held.token)  # so the lease's release finds its own
    assert await store.client.hgetall(emails.keys.uid_bucket("m1", 0)) == {b"1": b"e1"}
    assert await store.client.hget(emails.keys.state, EMAIL) == b"1"


async def test_a_node_without_the_script_loads_it_and_commits(store: Store) -> None:
    emails = emails_of(store)
    await store.client.script_flush()
    async with index_batch(emails) as batch:
        batch.map_uids("m1", {1: "e1"})
        batch.log(EMAIL, created=["e1"])
    assert await store.client.hget(emails.keys.uid_bucket("m1", 0), "1") == b"e1"
    assert [c.data_type for c in batch.changes] == [EMAIL]


async def test_zadd_present_adds_only_to_a_structure_that_exists(store: Store) -> None:
    emails = emails_of(store)
    lazy, built = emails.keys.dated("lazy"), emails.keys.dated("built")
    await store.client.zadd(built, {"e0": 0})
    async with index_batch(emails) as batch:
        batch._pipe.zadd_present(lazy, {"e1": 1})
        batch._pipe.zadd_present(built, {"e1": 1})
    assert await store.client.exists(lazy) == 0
    assert await store.client.zrange(built, 0, -1) == [b"e0", b"e1"]


async def test_the_initial_indexing_moves_states_without_a_per_id_log(store: Store) -> None:
    emails = emails_of(store)
    state = emails.state
    before = await state.state(EMAIL)
    writer = IndexWriter(emails, initial=True)
    await writer.add_copies("m1", [NewCopy(1, "e1", [], 1, 10, "t1")])
    during = await state.state(EMAIL)
    await writer.add_copies("m1", [NewCopy(2, "e2", [], 2, 10, "t2")])
    assert not await emails.indexed()
    await writer.finish()
    assert await emails.indexed()
    after = await state.state(EMAIL)
    assert len({before, during, after}) == 3  # every batch moved the state
    assert await store.client.exists(emails.keys.changed(EMAIL), emails.keys.born(EMAIL)) == 0
    assert await store.client.exists(emails.keys.changed(THREAD)) == 0
    meta = emails.keys.meta
    assert await store.client.hget(meta, floor_field(EMAIL)) == after.rsplit("-")[1].encode()
    # RFC 8620 5.2: states from before and during the first indexing cannot be calculated
    # from (no log was kept); the state it ended at can.
    for data_type in (EMAIL, THREAD):
        for old in (before, during):
            with pytest.raises(CannotCalculateChanges):
                await state.changes(data_type, old, None)
    assert (await state.changes(EMAIL, after, None)).created == []
    # From here on changes are logged and exact.
    later = IndexWriter(emails)
    await later.add_copies("m1", [NewCopy(3, "e3", [], 3, 10, "t3")])
    changes = await state.changes(EMAIL, after, None)
    assert (changes.created, changes.updated, changes.destroyed) == (["e3"], [], [])


async def test_uid_maps_span_buckets_and_go_as_a_whole(store: Store) -> None:
    emails = emails_of(store)
    keys = emails.keys
    owners = {uid: f"e{uid}" for uid in (1, 127, 128, 300, 5000)}
    async with index_batch(emails) as batch:
        batch.map_uids("m1", owners)
        batch.map_uids("m2", {7: "x7"})
    # Read back with a plain command per bucket: uid // 128 names the hash.
    for uid, email_id in owners.items():
        assert await store.client.hget(keys.uid_bucket("m1", uid // 128), str(uid)) == (
            email_id.encode()
        )
    assert await emails.uid_map("m1") == owners
    assert await emails.email_ids_of("m1", [300, 1, 999]) == {300: "e300", 1: "e1"}
    async with index_batch(emails) as batch:
        batch.unmap_uids("m1", [127, 300])
    assert await emails.held_uids(["m1", "m2"]) == {
        "m1": {1: "e1", 128: "e128", 5000: "e5000"},
        "m2": {7: "x7"},
    }
    async with index_batch(emails) as batch:
        batch.drop_uid_map("m1")
    assert await emails.uid_map("m1") == {}
    buckets = [keys.uid_bucket("m1", n) for n in (0, 1, 2, 39)]
    assert await store.client.exists(keys.uid_buckets("m1"), *buckets) == 0
    assert await emails.uid_map("m2") == {7: "x7"}


async def test_thread_refs_grow_by_bucket_splits_and_stay_findable(store: Store) -> None:
    emails = emails_of(store)
    keys = emails.keys
    refs = {ref_key(f"<{n}@example.org>"): f"t{n % 50}" for n in range(3000)}
    items = list(refs.items())
    for start in range(0, len(items), 500):
        async with index_batch(emails) as batch:
            batch.map_thread_refs(dict(items[start : start + 500]), {})
    assert await emails.thread_refs(refs) == refs
    level, split, count = (
        int(v)
        for v in await store.client.hmget(keys.meta, ["refs-level", "refs-split", "refs-count"])
    )
    buckets = [keys.thread_ref_bucket(n) for n in range((1 << level) + split)]
    sizes = [int(await store.client.hlen(b)) for b in buckets]
    # Read with plain commands: every key is in one of the buckets, each small enough for
    # Redis's listpack encoding, about 48 a bucket.
    assert sum(sizes) == count == len(refs)
    assert max(sizes) <= 128 and len(buckets) >= len(refs) // 48
    assert {await store.client.object("encoding", b) for b in buckets} == {b"listpack"}
    # A thread's last email goes: the keys pointing at it go, wherever they are.
    gone = [r for r, t in refs.items() if t == "t7"]
    async with index_batch(emails) as batch:
        batch._pipe.link([("t7", 1, b"", b"".join(ref_hash(r) for r in gone))])
    async with index_batch(emails) as batch:
        batch.link_threads({"t7": 0}, {}, {"t7"})
    assert await emails.thread_refs(gone) == {}
    assert await emails.thread_refs(refs) == {r: t for r, t in refs.items() if t != "t7"}
    assert int(await store.client.hget(keys.meta, "refs-count") or 0) == len(refs) - len(gone)


async def test_threads_grow_by_bucket_splits_and_read_back_whole(store: Store) -> None:
    emails = emails_of(store)
    keys = emails.keys
    wanted = {
        f"t{n}": ThreadStats(
            [[1_700_000_000 + k, f"x{n:04d}{k:016d}"] for k in range(1 + n % 4)],
            {"m1": 1 + n % 4} if n % 3 else {"m1": 1, "m2": n % 4},
            n % 2,
        )
        for n in range(3000)
    }
    # A long thread: hundreds of chunks (past what the head's first octet counts) and more
    # fields than one op's arguments, with ids of another form.
    wanted["long"] = ThreadStats([[k, f"M{k:030d}"] for k in range(2500)], {"m1": 2500}, 3)
    items = list(wanted.items())
    for start in range(0, len(items), 500):
        async with index_batch(emails) as batch:
            batch.put_threads(dict(items[start : start + 500]))
    got = await emails.threads(wanted)
    assert {t: (s.members, s.mailboxes, s.unread) for t, s in got.items()} == {
        t: (s.members, s.mailboxes, s.unread) for t, s in wanted.items()
    }
    assert await emails.thread_count() == len(wanted)
    assert sorted(await emails.thread_ids()) == sorted(wanted)
    snapshot, _ = await emails.thread_snapshot(["t5", "long", "none"])
    assert snapshot == {"t5": wanted["t5"].email_ids(), "long": wanted["long"].email_ids()}
    level, split, count = (
        int(v)
        for v in await store.client.hmget(
            keys.meta, ["threads-level", "threads-split", "threads-count"]
        )
    )
    buckets = [keys.thread_bucket(n) for n in range((1 << level) + split)]
    sizes = [int(await store.client.hlen(b)) for b in buckets]
    # Read with plain commands: every field is in one of the buckets, the table's count is
    # right, and buckets of the ordinary threads stay listpacks (values <= 64 octets).
    assert sum(sizes) == count
    (long_bucket,) = [b for b in buckets if await store.client.hexists(b, "long")]
    encodings = {await store.client.object("encoding", b) for b in buckets if b != long_bucket}
    assert encodings == {b"listpack"}
    # The long thread shrinks, then goes: its chunks go with it.
    async with index_batch(emails) as batch:
        batch.put_threads(
            {"long": ThreadStats([[1, "M1"], [2, "M2"]], {"m1": 2}, 0, got["long"].chunks)}
        )
    assert (await emails.threads(["long"]))["long"].members == [[1, "M1"], [2, "M2"]]
    sizes = [int(await store.client.hlen(b)) for b in buckets]
    assert sum(sizes) == int(await store.client.hget(keys.meta, "threads-count") or 0)
    async with index_batch(emails) as batch:
        batch.drop_threads(["long", "t1"])
    assert (await emails.threads(["long"]))["long"].members == []
    assert await emails.thread_count() == len(wanted) - 2
    assert not [
        f for b in buckets for f in await store.client.hkeys(b) if f.endswith((b".long", b".t1"))
    ]


async def test_a_reset_removes_the_thread_table(store: Store) -> None:
    emails = emails_of(store)
    keys = emails.keys
    async with index_batch(emails) as batch:
        batch.put_threads({f"t{n}": ThreadStats([[n, f"e{n}"]], {"m1": 1}, 0) for n in range(200)})
        batch.map_thread_refs({ref_key("<a@example.org>"): "t1"}, {"t1": "subject"})
        batch.link_threads({"t1": 1}, {ref_key("<a@example.org>"): "t1"}, ())
    level, split = (
        int(v) for v in await store.client.hmget(keys.meta, ["threads-level", "threads-split"])
    )
    buckets = [keys.thread_bucket(n) for n in range((1 << level) + split)]
    assert len(buckets) > 2 and await store.client.exists(*buckets) == len(buckets)
    # An index that no longer says its format (damaged, or older) is reset whole.
    assert await ensure_current(emails)
    assert await store.client.exists(*buckets) == 0
    assert await emails.thread_count() == 0
    assert await store.client.hmget(keys.meta, ["threads-count", "threads-heads"]) == [None, None]
