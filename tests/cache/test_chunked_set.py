"""The chunked sorted set against a plain Python model, on a single Redis and on the cluster.

Random batches of additions and removals (equal scores on purpose, ids differing only in
case so octet order matters, runs that split and emptied chunks that merge) go through the
index script's ``cadd``/``crem`` ops; after each batch the raw keys are read with a plain
client (never through the code under test) and must hold the model's members in order, every
chunk a listpack of at most 128, the directory naming each chunk by its lowest member, the
count right; and windows from both ends, deep positions and anchors answer as the model does.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.cache import chunked_set
from gateway.cache.chunked_set import (
    CHUNK_FILL,
    CHUNK_MAX,
    Unsettled,
    chunk_key,
    chunk_meta,
    chunked_keys,
    directory,
    read_window,
)
from gateway.cache.emails import EmailStore
from gateway.cache.index_batch import index_batch
from gateway.cache.index_script import OpRecorder
from gateway.cache.keys import AccountKeys
from gateway.cache.query_index import QueryKeys
from gateway.cache.store import Store
from gateway.sync.index_writer import IndexWriter, NewCopy
from tests.rediscluster import RedisClusterSet
from tests.servers import LOOPBACK


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


def ordered(model: dict[str, int]) -> list[str]:
    """The model's members as the set orders them: score, then member octets."""
    return [m for m, _ in sorted(model.items(), key=lambda i: (i[1], i[0].encode()))]


def expected(
    model: dict[str, int],
    *,
    ascending: bool,
    position: int,
    anchor: str | None,
    anchor_offset: int,
    limit: int | None,
) -> tuple[int, list[str]] | None:
    """RFC 8620 5.5 windowing over the model."""
    members = ordered(model)
    if not ascending:
        members.reverse()
    if anchor is not None:
        if anchor not in model:
            return None
        start = max(0, members.index(anchor) + anchor_offset)
    else:
        start = max(0, len(members) + position) if position < 0 else position
    stop = len(members) if limit is None else start + limit
    return start, members[start:stop]


async def raw_members(store: Store, name: str) -> list[str]:
    """The chunks' members in directory order, checking each chunk's shape on the way."""
    client = store.client
    entries = await client.zrange(directory(name), 0, -1, withscores=True)
    found: list[str] = []
    for entry, low_score in entries:
        low, _, number = entry.decode().rpartition("\0")
        key = chunk_key(name, number)
        chunk = await client.zrange(key, 0, -1, withscores=True)
        assert 0 < len(chunk) <= CHUNK_MAX
        assert (chunk[0][0].decode(), chunk[0][1]) == (low, low_score)
        assert await client.object("encoding", key) == b"listpack"
        # Its size, kept in the count hash for deep positions and anchors.
        assert int(await client.hget(chunk_meta(name), number) or -1) == len(chunk)
        found += [m.decode() for m, _ in chunk]
    return found


def random_id(rng: random.Random) -> str:
    return "".join(rng.choice("aAbBzZ0_-") for _ in range(rng.randint(1, 6)))


async def apply(
    store: Store, keys: AccountKeys, name: str, op: str, members: dict[str, int]
) -> None:
    recorder = OpRecorder(keys)
    (recorder.chunk_add if op == "add" else recorder.chunk_remove)(name, members)
    assert await recorder.run(store.client, None) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_operations_agree_with_a_model(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    keys = AccountKeys("a" + secrets.token_hex(4))
    name = keys.dated("INBOX")
    model: dict[str, int] = {}
    for step in range(40):
        kind = rng.random()
        if kind < 0.15:
            # An ascending run past the end, as the first sync writes.
            top = max(model.values(), default=0)
            batch = {f"n{step}x{i}": top + 1 + i // 3 for i in range(rng.randint(100, 400))}
            await apply(store, keys, name, "add", batch)
            model.update(batch)
        elif kind < 0.6:
            batch = {random_id(rng): rng.randint(0, 30) for _ in range(rng.randint(1, 200))}
            batch = {m: model.get(m, s) for m, s in batch.items()}  # a member keeps its score
            await apply(store, keys, name, "add", batch)
            model.update(batch)
        else:
            chosen = rng.sample(sorted(model), min(len(model), rng.randint(1, 250)))
            absent = {random_id(rng) + "!": rng.randint(0, 30) for _ in range(3)}
            gone = {m: model[m] for m in chosen} | absent
            await apply(store, keys, name, "remove", gone)
            for member in chosen:
                del model[member]
        assert await raw_members(store, name) == ordered(model)
        count = await store.client.hget(chunk_meta(name), "n")
        assert int(count or 0) == len(model)
        for _ in range(6):
            ascending = rng.random() < 0.5
            anchor = rng.choice([None, None, *model, "missing"]) if model else None
            window = {
                "ascending": ascending,
                "position": rng.choice([0, 1, -1, -50, rng.randint(-600, 600)]),
                "anchor": anchor,
                "anchor_offset": rng.randint(-5, 5),
                "limit": rng.choice([None, 0, 1, 50, rng.randint(1, 300)]),
            }
            found = await read_window(
                store.client,
                name,
                state_key=keys.state,
                meta_key=keys.meta,
                data_type="Email",
                **window,  # type: ignore[arg-type]
            )
            want = expected(model, **window)  # type: ignore[arg-type]
            if want is None:
                assert found is None, window
            else:
                assert found is not None, window
                assert (found.position, found.ids, found.total) == (*want, len(model)), window
    await apply(store, keys, name, "remove", dict(model))
    # Emptied, the set leaves no key behind, not even its count hash.
    every = await chunked_keys(store.client, [name])
    assert await store.client.exists(*every, chunk_meta(name)) == 0


async def test_a_first_sync_fills_chunks_and_the_list_window_reads_the_last(store: Store) -> None:
    keys = AccountKeys("a" + secrets.token_hex(4))
    name = keys.dated()
    model: dict[str, int] = {}
    for page in range(20):
        batch = {f"e{page:02}{i:03}": 1_700_000_000 + page * 500 + i for i in range(500)}
        await apply(store, keys, name, "add", batch)
        model.update(batch)
    # Appending in order fills chunks to CHUNK_FILL, leaving room for later scattered adds:
    # 10,000 members in ceil(10,000 / 96).
    assert await store.client.zcard(directory(name)) == -(-len(model) // CHUNK_FILL)
    found = await read_window(
        store.client,
        name,
        state_key=keys.state,
        meta_key=keys.meta,
        data_type="Email",
        ascending=False,
        position=0,
        anchor=None,
        anchor_offset=0,
        limit=50,
    )
    assert found is not None
    assert found.ids == ordered(model)[::-1][:50] and found.total == len(model)


async def test_chunks_emptied_by_removals_merge(store: Store) -> None:
    keys = AccountKeys("a" + secrets.token_hex(4))
    name = keys.dated("INBOX")
    model = {f"e{i:04}": 1_000 + i for i in range(1280)}
    await apply(store, keys, name, "add", model)
    assert await store.client.zcard(directory(name)) == -(-1280 // CHUNK_FILL)
    gone = {m: s for m, s in model.items() if int(m[1:]) % 10}
    await apply(store, keys, name, "remove", gone)
    kept = {m: s for m, s in model.items() if m not in gone}
    assert await raw_members(store, name) == ordered(kept)
    # 128 members left of 1,280: merged into one or two chunks, not 14 of 9 or 10.
    assert await store.client.zcard(directory(name)) <= 2


async def command_calls(client: aioredis.Redis) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT (Redis's own count)."""
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def read(store: Store, keys: AccountKeys, name: str, **window: object) -> list[str]:
    found = await read_window(
        store.client,
        name,
        state_key=keys.state,
        meta_key=keys.meta,
        data_type="Email",
        **{"position": 0, "anchor": None, "anchor_offset": 0, **window},  # type: ignore[arg-type]
    )
    assert found is not None
    return found.ids


@pytest.fixture
async def single(redis_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(redis_url)
    yield store
    await store.close()


async def test_scattered_adds_split_chunks_natively_and_cost_a_few_commands_each(
    single: Store,
) -> None:
    keys = AccountKeys("a" + secrets.token_hex(4))
    name = keys.dated("INBOX")
    model = {f"e{i:05}": 1_000 + 2 * i for i in range(9_600)}
    await apply(single, keys, name, "add", model)
    # Between every member of the first sync, about 40 per chunk: each chunk splits.
    scattered = {f"e{i:05}x": 1_001 + 2 * i for i in range(0, 9_600, 2)}
    await single.client.config_resetstat()
    await apply(single, keys, name, "add", scattered)
    calls = await command_calls(single.client)
    model.update(scattered)
    assert await raw_members(single, name) == ordered(model)
    # Split by ZRANGESTORE + ZREMRANGEBYRANK, never a chunk's members read into Lua.
    assert calls.get("zrangestore", 0) >= 100
    assert calls["zrange"] <= 4 * len(scattered)
    inside = sum(n for c, n in calls.items() if c not in ("evalsha", "eval", "config|resetstat"))
    assert inside <= 10 * len(scattered)


async def test_a_whole_set_is_read_by_plain_pipelined_ranges(single: Store) -> None:
    keys = AccountKeys("a" + secrets.token_hex(4))
    name = keys.dated("INBOX")
    model = {f"e{i:05}": 1_000 + i for i in range(2_000)}
    await apply(single, keys, name, "add", model)
    chunks = await single.client.zcard(directory(name))
    await single.client.config_resetstat()
    assert await read(single, keys, name, ascending=True, limit=None) == ordered(model)
    calls = await command_calls(single.client)
    # No script holds Redis for the whole read: the directory, one ZRANGE per chunk, and
    # the modseq and epoch before and after.
    assert "evalsha" not in calls and "eval" not in calls
    assert calls["zrange"] == chunks + 1 and calls["hget"] == 4
    newest = ordered(model)[::-1]
    assert (
        await read(single, keys, name, ascending=False, anchor="e01000", limit=None)
        == (newest[newest.index("e01000") :])
    )


async def test_a_whole_set_that_keeps_changing_is_refused(single: Store) -> None:
    keys = AccountKeys("a" + secrets.token_hex(4))
    name = keys.dated("INBOX")
    await apply(single, keys, name, "add", {f"e{i:05}": 1_000 + i for i in range(500)})
    moving = True

    async def writer() -> None:
        while moving:
            await single.client.hincrby(keys.state, "Email", 1)

    task = asyncio.create_task(writer())
    try:
        with pytest.raises(Unsettled):
            for _ in range(50):
                await read(single, keys, name, ascending=True, limit=None)
    finally:
        moving = False
        await task


async def test_anchors_and_deep_positions_read_sizes_not_chunks(single: Store) -> None:
    keys = AccountKeys("a" + secrets.token_hex(4))
    name = keys.dated("INBOX")
    model = {f"e{i:05}": 1_000 + i for i in range(9_600)}
    await apply(single, keys, name, "add", model)
    newest = ordered(model)[::-1]
    await single.client.config_resetstat()
    # Newest first, anchored on a recent email: the walk starts from the newest chunk.
    assert (
        await read(single, keys, name, ascending=False, anchor=newest[3], limit=5) == (newest[3:8])
    )
    calls = await command_calls(single.client)
    assert calls["zrank"] == 1
    assert calls.get("zcard", 0) == 1  # the directory's
    await single.client.config_resetstat()
    # A deep position: chunk sizes from the count hash, 32 per HMGET.
    assert (
        await read(single, keys, name, ascending=True, position=4_000, limit=10)
        == (newest[::-1][4_000:4_010])
    )
    calls = await command_calls(single.client)
    assert calls.get("zcard", 0) == 1 and calls["hmget"] <= 2


async def test_a_folder_forgotten_takes_its_chunked_sets(single: Store) -> None:
    account = "a" + secrets.token_hex(4)
    keys = AccountKeys(account)
    emails = EmailStore(single.client, account)
    queries = QueryKeys(keys)
    sets = [keys.dated("F"), queries.unseen("F"), queries.flagged("F")]
    for name in sets:
        await apply(single, keys, name, "add", {f"e{i:04}": 1_000 + i for i in range(300)})
    async with index_batch(emails) as batch:
        batch.forget_folder("F", [])
    every = await chunked_keys(single.client, sets)
    assert await single.client.exists(*every) == 0


async def test_a_batch_in_a_migrating_slot_writes_nothing(redis_cluster: RedisClusterSet) -> None:
    keys = AccountKeys("a" + secrets.token_hex(4))
    name = keys.dated("INBOX")
    owner = redis_cluster.owner(keys.meta)
    other = next(n for n in redis_cluster.nodes if n is not owner)
    client = aioredis.Redis(host=LOOPBACK, port=owner.port)
    try:
        await client.hset(keys.meta, "epoch", "e")
        await client.hset(keys.state, "Email", "1")
        await apply_on(client, keys, name, {f"e{i:03}": 1_000 + i for i in range(90)})
        slot = int(await client.execute_command("CLUSTER KEYSLOT", keys.meta))
        with other.client() as sync:
            target = sync.execute_command("CLUSTER MYID")
        await client.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target)
        try:
            recorder = OpRecorder(keys)
            recorder.hset(keys.meta, {"marker": "1"})
            # Past the end: a new chunk, a key the script names itself.
            recorder.chunk_add(name, {f"f{i:03}": 5_000 + i for i in range(200)})
            with pytest.raises(aioredis.ResponseError, match="nothing written"):
                await recorder.run(client, None)
        finally:
            await client.execute_command("CLUSTER SETSLOT", slot, "STABLE")
        assert await client.hget(keys.meta, "marker") is None
        assert await client.zcard(directory(name)) == 1
    finally:
        await client.aclose()


async def apply_on(
    client: aioredis.Redis, keys: AccountKeys, name: str, members: dict[str, int]
) -> None:
    recorder = OpRecorder(keys)
    recorder.chunk_add(name, members)
    assert await recorder.run(client, None) == []


async def test_a_whole_set_that_keeps_changing_is_answered_from_the_records(
    single: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = "a" + secrets.token_hex(4)
    emails = EmailStore(single.client, account)
    copies = [NewCopy(u, f"e{u:04}", [], 1_700_000_000 + u // 2, 10, "t1") for u in range(1, 301)]
    await IndexWriter(emails).add_copies("m1", copies)
    window = {"ascending": False, "position": 0, "anchor": "e0100", "anchor_offset": -2}
    read_whole = await emails.dated_window("m1", limit=None, **window)  # type: ignore[arg-type]
    ids = await emails.dated_ids("m1")
    assert read_whole is not None and read_whole[1][2] == "e0100" and len(ids) == 300
    # Every read of the set "moved": the records answer the same.
    monkeypatch.setattr(chunked_set, "WHOLE_TRIES", 0)
    assert await emails.dated_window("m1", limit=None, **window) == read_whole  # type: ignore[arg-type]
    assert await emails.dated_ids("m1") == ids
