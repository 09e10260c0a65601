"""The chunked sorted set against a plain Python model, on a single Redis and on the cluster.

Random batches of additions and removals (equal scores on purpose, ids differing only in
case so octet order matters, runs that split and emptied chunks that merge) go through the
index script's ``cadd``/``crem`` ops; after each batch the raw keys are read with a plain
client (never through the code under test) and must hold the model's members in order, every
chunk a listpack of at most 128, the directory naming each chunk by its lowest member, the
count right; and windows from both ends, deep positions and anchors answer as the model does.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import AsyncIterator

import pytest

from gateway.cache.chunked_set import (
    CHUNK_MAX,
    chunk_key,
    chunk_meta,
    chunked_keys,
    directory,
    read_window,
)
from gateway.cache.index_script import OpRecorder
from gateway.cache.keys import AccountKeys
from gateway.cache.store import Store
from tests.rediscluster import RedisClusterSet


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
    assert await store.client.hget(chunk_meta(name), "n") == b"0"
    assert await store.client.exists(directory(name)) == 0
    every = await chunked_keys(store.client, [name])
    assert await store.client.exists(*every) == 1  # the count hash alone is left


async def test_a_first_sync_fills_chunks_and_the_list_window_reads_the_last(store: Store) -> None:
    keys = AccountKeys("a" + secrets.token_hex(4))
    name = keys.dated()
    model: dict[str, int] = {}
    for page in range(20):
        batch = {f"e{page:02}{i:03}": 1_700_000_000 + page * 500 + i for i in range(500)}
        await apply(store, keys, name, "add", batch)
        model.update(batch)
    # Appending in order leaves full chunks: 10,000 members in ceil(10,000 / 128).
    assert await store.client.zcard(directory(name)) == -(-len(model) // CHUNK_MAX)
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
    assert await store.client.zcard(directory(name)) == 10
    gone = {m: s for m, s in model.items() if int(m[1:]) % 10}
    await apply(store, keys, name, "remove", gone)
    kept = {m: s for m, s in model.items() if m not in gone}
    assert await raw_members(store, name) == ordered(kept)
    # 128 members left of 1,280: merged into one or two chunks, not ten of 12 or 13.
    assert await store.client.zcard(directory(name)) <= 2
