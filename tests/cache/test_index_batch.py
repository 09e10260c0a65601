"""An index batch is one Lua script: all or nothing, fenced by the lease, one round trip.

Run on a single Redis and on the 3-node cluster alike (the ``client`` fixture is both); what
was written is read back with a plain client, never through the code under test.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.cache.changes import CannotCalculateChanges, floor_field
from gateway.cache.chunked_set import directory
from gateway.cache.emails import EMAIL, THREAD, EmailStore, ThreadStats
from gateway.cache.index_batch import index_batch
from gateway.cache.index_format import ensure_current
from gateway.cache.keys import AccountKeys
from gateway.cache.locks import LeaseLost, lease
from gateway.cache.store import Store
from gateway.cache.thread_table import decode_thread, encode_thread, ref_hash
from gateway.sync.index_writer import IndexWriter, NewCopy
from gateway.sync.threads import ref_key
from tests.rediscluster import RedisClusterSet
from tests.servers import RedisServer

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


def own_id(k: int) -> str:
    """An email id of the gateway's own form (a letter and 20 base32 digits)."""
    return "e" + "".join("abcdefghij"[int(c)] for c in f"{k:020d}")


async def _table(client: Redis, keys: AccountKeys) -> dict[bytes, bytes]:
    level, split = (
        int(v) for v in await client.hmget(keys.meta, ["threads-level", "threads-split"])
    )
    table: dict[bytes, bytes] = {}
    for n in range((1 << level) + split):
        table.update(await client.hgetall(keys.thread_bucket(n)))
    return table


async def _octets_in(client: Redis) -> int:
    return int((await client.info("stats"))["total_net_input_bytes"])


async def test_a_long_threads_flag_change_or_append_writes_only_what_changed(
    private_redis: RedisServer,
) -> None:
    """Review 16c M1: a rewrite sends the head and the chunks from the first changed member
    on, not the whole thread (counted as octets Redis received, on a Redis of its own)."""
    store = Store.from_url(private_redis.url)
    client = store.client
    try:
        emails = emails_of(store)
        members = [[1_700_000_000 + k, own_id(k)] for k in range(2000)]
        async with index_batch(emails) as batch:
            batch.put_threads({"t": ThreadStats(list(members), {"m1": 2000}, 0)})
        before = await _table(client, emails.keys)
        assert len(before) > 600  # the head and its ~666 chunks

        # A flag change: unread 0 -> 1 moves the head alone.
        stats = (await emails.threads(["t"]))["t"]
        stats.unread = 1
        sent = await _octets_in(client)
        async with index_batch(emails) as batch:
            batch.put_threads({"t": stats})
        sent = await _octets_in(client) - sent
        after = await _table(client, emails.keys)
        assert {f for f in after if after[f] != before.get(f)} == {b"t"}
        assert sent < 1000  # the whole thread is over 40,000 octets

        # An append (the newest member): the head and the last chunk (or a new one).
        stats = (await emails.threads(["t"]))["t"]
        stats.members.append([1_700_002_000, own_id(2000)])
        stats.mailboxes["m1"] += 1
        sent = await _octets_in(client)
        async with index_batch(emails) as batch:
            batch.put_threads({"t": stats})
        sent = await _octets_in(client) - sent
        before, after = after, await _table(client, emails.keys)
        assert 1 <= len({f for f in after if after[f] != before.get(f)} - {b"t"}) <= 1
        assert sent < 1000
        members.append([1_700_002_000, own_id(2000)])
        got = (await emails.threads(["t"]))["t"]
        assert (got.members, got.mailboxes, got.unread) == (members, {"m1": 2001}, 1)
        # The kept cut is the one a whole rewrite makes.
        number = (await emails.numbers.assign(["m1"])).by_id["m1"]
        assert got.stored == encode_thread(1, {number: 2001}, members)

        # A member in the middle goes: the chunks before it stay as they were.
        stats = got
        stats.members = [m for m in stats.members if m[1] != own_id(1000)]
        stats.mailboxes["m1"] -= 1
        async with index_batch(emails) as batch:
            batch.put_threads({"t": stats})
        before, after = after, await _table(client, emails.keys)
        changed = {f for f in after if after[f] != before.get(f)} | (before.keys() - after.keys())
        assert b"t" in changed and not changed & {f"{k}.t".encode() for k in range(1, 330)}
        del members[1000]
        got = (await emails.threads(["t"]))["t"]
        assert got.members == members
        assert int(await client.hget(emails.keys.meta, "threads-count") or 0) == len(after)
    finally:
        await store.close()


def test_a_kept_cut_decodes_to_the_members_and_changes_only_from_the_first_edit() -> None:
    """encode_thread with the stored parts, over random edits (inserts anywhere, removals,
    appends, head changes, ids of both forms): what it gives decodes to the new members, every
    part fits in 64 octets, and the parts before the one holding the first changed member
    are the stored ones."""
    rng = random.Random(16)
    members: list[list[Any]] = []
    stored: list[bytes] = []
    for step in range(400):
        old = [list(m) for m in members]
        edit = rng.choice(["append", "insert", "remove", "unread", "mailbox"])
        if edit == "append" or not members:
            members.append([1_700_000_000 + 10 * step, own_id(step)])
        elif edit == "insert":
            at = rng.randrange(len(members))
            members.insert(at, [members[at][0], f"M{step:0{rng.randrange(1, 40)}d}"])
        elif edit == "remove":
            del members[rng.randrange(len(members))]
        unread = rng.randrange(200) if edit == "unread" else 3
        mailboxes = {n: 1 for n in range(1 + (step % 5 if edit == "mailbox" else 0))}
        parts = encode_thread(unread, mailboxes, members, stored)
        assert decode_thread(parts) == (unread, [x for n in mailboxes for x in (n, 1)], members)
        assert all(len(p) <= 64 for p in parts), step
        same = next(
            (i for i, (a, b) in enumerate(zip(old, members, strict=False)) if a != b), len(old)
        )
        if stored:
            # The stored part holding the first changed member (an append: the last part).
            sizes = [len(decode_thread(stored[:1])[2])]
            sizes += [len(decode_thread([b"\0\x93\0\x90\x90", c])[2]) for c in stored[1:]]
            part, seen = 0, sizes[0]
            while part < len(sizes) - 1 and seen <= min(same, len(old) - 1):
                part += 1
                seen += sizes[part]
            head_kept = len(decode_thread(parts[:1])[2]) == sizes[0]
            if head_kept and part > 0:
                assert parts[1:part] == stored[1:part], step
        stored = parts


async def _calls(client: Redis, *names: str) -> int:
    stats = await client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{n}", {}).get("calls", 0)) for n in names)


async def test_linking_a_long_threads_next_email_writes_only_its_last_links_field(
    private_redis: RedisServer,
) -> None:
    """Review 16c M2: a thread's links are append-only (the record count in ``r.T``, new ref
    hashes in the last field), so linking the 1,000th email writes O(1) fields; the hashes
    are deduplicated; its last email's removal still clears every entry naming it."""
    store = Store.from_url(private_redis.url)
    client = store.client
    try:
        emails = emails_of(store)
        keys = emails.keys
        refs = {ref_key(f"<{n}@example.org>"): "t" for n in range(1998)}
        items = list(refs.items())
        for start in range(0, len(items), 200):
            part = dict(items[start : start + 200])
            async with index_batch(emails) as batch:
                batch.map_thread_refs(part, {"t": "subject"} if not start else {})
                batch.link_threads({"t": (start + 200) // 2 - 1}, part, ())
        before = await _table(client, keys)
        assert len([f for f in before if f.startswith(b"r")]) > 100  # 1,998 hashes
        # The 1,000th email, with two new Message-IDs and one named twice.
        new = {ref_key("<a@example.org>"): "t", ref_key("<b@example.org>"): "t"}
        await client.config_resetstat()
        async with index_batch(emails) as batch:
            batch.map_thread_refs(new, {})
            batch.link_threads({"t": 1000}, {**new, ref_key("<a@example.org>"): "t"}, ())
            batch._pipe.link([("t", "", b"", ref_hash(ref_key("<a@example.org>")))])
        # Per link op r.T and the last field, and the table's shape in the meta; the two
        # refs and the refs table's shape (a whole rewrite: over 120 for these 2,000 hashes).
        assert await _calls(client, "hset") <= 8
        assert await _calls(client, "hget", "hexists", "hmget") <= 40
        after = await _table(client, keys)
        changed = {f for f in after if after[f] != before.get(f)}
        assert b"r.t" in changed and len(changed) <= 2
        joined = b"".join(
            after[f] for f in [b"r.t"] + [f"r{k}.t".encode() for k in range(2, 200)] if f in after
        )
        hashes = joined[joined.index(b":") + 9 :]
        assert (
            len(hashes) == 4 * 2000
            and len(set(hashes[i : i + 4] for i in range(0, 8000, 4))) == 2000
        )
        assert (await emails.threads_and_links([], ["t"]))[1] == {"t": 1000}
        assert max(len(v) for f, v in after.items() if f.startswith(b"r")) <= 64
        # The thread's last email goes: every thread-refs entry naming it goes too.
        async with index_batch(emails) as batch:
            batch.link_threads({"t": 0}, {}, {"t"})
        assert await emails.thread_refs([*refs, *new]) == {}
        assert int(await client.hget(keys.meta, "refs-count") or 0) == 0
        assert not [f for f in await _table(client, keys) if f.startswith(b"r")]
    finally:
        await store.close()


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
