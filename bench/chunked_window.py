"""A chunked sorted set (gateway.cache.chunked_set) beside the plain zset it replaced.

One throw-away redis-server; for each size, the same members (20-character ids scored by a
receivedAt, ascending as a first sync writes them, a few equal) go into a plain zset (index
format 2: ZADD per page) and into a chunked set (the index script's ``cadd``, pages of 500).
Printed per size, plain beside chunked:

* octets per member (MEMORY USAGE samples=0 over every key of the set);
* writing them: Redis commands per member (INFO commandstats, commands inside scripts
  counted) and Redis CPU per member (INFO cpu);
* windows, each read REQUESTS times: the list screen (newest 50 with the total and the Email
  state), a deep position (newest first from the middle), the oldest 50, an anchor in the
  middle: Redis commands per read, Redis CPU per read (µs) and the median wall time per read
  (measured while the machine may be shared). The plain reads are what format 2 sent: a MULTI
  of ZCARD, ZRANK for an anchor, ZRANGE and two HGETs, then a ZRANGE when the start needed
  the count or the rank first.

Run: .venv/bin/python -m bench.chunked_window [--sizes 1000,10000,100000] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio

from bench.servers import local_redis
from gateway.cache.chunked_set import chunked_keys, read_window
from gateway.cache.index_script import OpRecorder
from gateway.cache.keys import AccountKeys

PAGE = 500
Read = Callable[[], Awaitable[Any]]


def redis_counts(client: redis.Redis) -> tuple[int, float]:
    """Commands run and CPU seconds used by the server so far."""
    calls = sum(int(s["calls"]) for s in client.info("commandstats").values())
    cpu = client.info("cpu")
    return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def measured(plain: redis.Redis, work: Read, times: int) -> tuple[float, float, float]:
    """(commands, Redis CPU µs, median wall µs) per run of ``work``."""
    await work()  # loads the script, warms the connection
    walls = []
    calls, cpu = redis_counts(plain)
    for _ in range(times):
        started = time.perf_counter()
        await work()
        walls.append(time.perf_counter() - started)
    calls_after, cpu_after = redis_counts(plain)
    # The INFO calls themselves: two per measurement (commandstats, cpu) are counted too.
    return (
        (calls_after - calls - 2) / times,
        (cpu_after - cpu) / times * 1e6,
        statistics.median(walls) * 1e6,
    )


def members(size: int) -> dict[str, int]:
    return {f"M{n:09d}abcdefghij": 1_700_000_000 + n * 60 - n % 7 for n in range(size)}


async def plain_window(
    client: redis.asyncio.Redis,
    keys: AccountKeys,
    key: str,
    *,
    position: int,
    anchor: str | None,
    ascending: bool,
) -> list[Any]:
    """Format 2's read: one MULTI, and a second ZRANGE when the start needed a count or rank."""
    direct = anchor is None and position >= 0
    async with client.pipeline(transaction=True) as pipe:
        pipe.zcard(key)
        if anchor is not None:
            (pipe.zrank if ascending else pipe.zrevrank)(key, anchor)
        if direct:
            pipe.zrange(key, position, position + 49, desc=not ascending)
        pipe.hget(keys.state, "Email")
        pipe.hget(keys.meta, "epoch")
        results = await pipe.execute()
    if direct:
        return list(results[1])
    start = int(results[1]) if anchor is not None else int(results[0]) + position
    return list(await client.zrange(key, start, start + 49, desc=not ascending))


async def one_size(url: str, size: int, requests: int) -> dict[str, Any]:
    plain = redis.Redis.from_url(url)
    client = redis.asyncio.Redis.from_url(url)
    plain.flushall()
    keys = AccountKeys("bench")
    chunked, flat = keys.dated("chunked"), keys.dated("plain")
    items = list(members(size).items())
    ids = [i for i, _ in items]
    result: dict[str, Any] = {}
    calls, cpu = redis_counts(plain)
    for start in range(0, size, PAGE):
        await client.zadd(flat, dict(items[start : start + PAGE]))
    calls_after, cpu_after = redis_counts(plain)
    result["write plain"] = ((calls_after - calls - 2) / size, (cpu_after - cpu) / size * 1e6)
    calls, cpu = redis_counts(plain)
    for start in range(0, size, PAGE):
        recorder = OpRecorder(keys)
        recorder.chunk_add(chunked, dict(items[start : start + PAGE]))
        await recorder.run(client, None)
    calls_after, cpu_after = redis_counts(plain)
    result["write chunked"] = ((calls_after - calls - 2) / size, (cpu_after - cpu) / size * 1e6)
    result["octets plain"] = int(plain.memory_usage(flat, samples=0) or 0) / size
    every = await chunked_keys(client, [chunked])
    result["octets chunked"] = sum(int(plain.memory_usage(k, samples=0) or 0) for k in every) / size
    middle = ids[size // 2]
    windows = {
        "newest 50": {"position": 0, "anchor": None, "ascending": False},
        "newest, from the middle": {"position": size // 2, "anchor": None, "ascending": False},
        "oldest 50": {"position": -50, "anchor": None, "ascending": False},
        "anchor in the middle": {"position": 0, "anchor": middle, "ascending": False},
    }
    for label, window in windows.items():

        async def old(window: dict[str, Any] = window) -> Any:
            return await plain_window(client, keys, flat, **window)

        async def new(window: dict[str, Any] = window) -> Any:
            return await read_window(
                client,
                chunked,
                state_key=keys.state,
                meta_key=keys.meta,
                data_type="Email",
                anchor_offset=0,
                limit=50,
                **window,
            )

        found = await new()
        assert found is not None and found.ids == [i.decode() for i in await old()], label
        result[f"{label} plain"] = await measured(plain, old, requests)
        result[f"{label} chunked"] = await measured(plain, new, requests)
    await client.aclose()
    plain.close()
    return result


def report(results: dict[int, dict[str, Any]]) -> None:
    print("\nchunked sorted set beside a plain zset (Redis 7, default listpack limits)")
    print(f"{'':34}{'size':>8}{'plain':>12}{'chunked':>12}")
    for size, result in results.items():
        print(
            f"{'octets per member':34}{size:>8}"
            f"{result['octets plain']:>12.1f}{result['octets chunked']:>12.1f}"
        )
        for kind, index, unit in (("commands", 0, ""), ("Redis CPU", 1, " µs")):
            name = f"write: {kind} per member{unit}"
            old, new = result["write plain"][index], result["write chunked"][index]
            print(f"{name:34}{size:>8}{old:>12.3f}{new:>12.3f}")
    print("\nwindows of 50 (per read; wall times measured while the machine may be shared)")
    print(
        f"{'window':26}{'size':>8}{'cmds plain':>12}{'chunked':>9}"
        f"{'CPU µs plain':>14}{'chunked':>9}{'wall µs plain':>15}{'chunked':>9}"
    )
    for size, result in results.items():
        for label in ("newest 50", "newest, from the middle", "oldest 50", "anchor in the middle"):
            old, new = result[f"{label} plain"], result[f"{label} chunked"]
            print(
                f"{label:26}{size:>8}{old[0]:>12.1f}{new[0]:>9.1f}"
                f"{old[1]:>14.1f}{new[1]:>9.1f}{old[2]:>15.0f}{new[2]:>9.0f}"
            )


def main(sizes: list[int], requests: int) -> None:
    with local_redis() as server:
        results = {size: asyncio.run(one_size(server.url, size, requests)) for size in sizes}
    report(results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--requests", type=int, default=2000)
    options = parser.parse_args()
    main([int(s) for s in options.sizes.split(",")], options.requests)
