"""The concurrency limit against a real Redis: admission, the FIFO wait for a slot, refusals
decided in the process without Redis, cancelled waiters, and the limit across processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis

from gateway.cache.limits import ConcurrencyLimiter, TooManyConcurrent
from gateway.cache.store import Store

PATIENCE = 10.0


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(redis_url)
    yield store
    await store.close()


def redis_commands(client: redis.Redis) -> dict[str, int]:
    """Commands the Redis server ran so far, from its own INFO commandstats (INFO left out)."""
    stats = client.info("commandstats")
    return {name: int(v["calls"]) for name, v in stats.items() if name != "cmdstat_info"}


async def hold(limiter: ConcurrencyLimiter, account: str, gate: asyncio.Event) -> None:
    async with limiter.admit(account):
        await gate.wait()


async def until(predicate: object) -> None:
    async with asyncio.timeout(PATIENCE):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.005)


async def test_the_limit_admits_refuses_and_sends_its_script_once(redis_url: str) -> None:
    names: list[str] = []
    store = Store.from_url(
        redis_url, observer=lambda name, _s, failed: names.append(name) if not failed else None
    )
    limiter = ConcurrencyLimiter(store.client, "api", 1, lease_seconds=60, wait_seconds=0.1)
    try:
        async with limiter.admit("acct-limits"):
            with pytest.raises(TooManyConcurrent):
                async with limiter.admit("acct-limits"):
                    pass
        async with limiter.admit("acct-limits"):
            pass
    finally:
        await store.close()
    assert "EVAL" not in names  # the script text travels once (SCRIPT LOAD), then by its sha
    assert names.count("EVALSHA") == 2  # the refused request never reached Redis


async def test_sixteen_requests_on_four_slots_all_get_through_in_turn(store: Store) -> None:
    limiter = ConcurrencyLimiter(store.client, "api", 4, lease_seconds=60)
    inside = 0
    most = 0

    async def request() -> None:
        nonlocal inside, most
        async with limiter.admit("acct-sixteen"):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.02)
            inside -= 1

    await asyncio.gather(*(request() for _ in range(16)))  # none refused
    assert most == 4
    assert limiter.queued("acct-sixteen") == 0


async def test_waiters_get_the_slot_in_the_order_they_came(store: Store) -> None:
    limiter = ConcurrencyLimiter(store.client, "api", 1, lease_seconds=60)
    order: list[int] = []

    async def request(number: int) -> None:
        async with limiter.admit("acct-fifo"):
            order.append(number)
            await asyncio.sleep(0.005)

    tasks = []
    for number in range(4):
        tasks.append(asyncio.create_task(request(number)))
        await asyncio.sleep(0)  # each starts (and queues) before the next: arrival order
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]  # nobody overtakes an earlier waiter


async def test_requests_beyond_the_queue_are_refused_without_redis(
    store: Store, redis_url: str
) -> None:
    limiter = ConcurrencyLimiter(store.client, "api", 4, lease_seconds=60)
    gate = asyncio.Event()
    holders = [asyncio.create_task(hold(limiter, "acct-flood", gate)) for _ in range(4)]
    waiters = [
        asyncio.create_task(hold(limiter, "acct-flood", gate)) for _ in range(limiter.queue_bound)
    ]
    await until(lambda: limiter.queued("acct-flood") == limiter.queue_bound)
    client = redis.Redis.from_url(redis_url)
    before = redis_commands(client)
    refused = 0
    for _ in range(100):
        try:
            async with limiter.admit("acct-flood"):
                pass
        except TooManyConcurrent:
            refused += 1
    assert refused == 100
    assert redis_commands(client) == before  # not one command for the 100 refusals
    gate.set()
    await asyncio.gather(*holders, *waiters)  # every waiter got its turn
    assert client.zcard("jg:{acct-flood}:inflight:api") == 0
    client.close()


async def test_a_cancelled_waiter_leaves_the_queue_and_passes_no_slot_away(store: Store) -> None:
    limiter = ConcurrencyLimiter(store.client, "api", 1, lease_seconds=60)
    gate = asyncio.Event()
    holder = asyncio.create_task(hold(limiter, "acct-cancel", gate))
    waiters = [asyncio.create_task(hold(limiter, "acct-cancel", gate)) for _ in range(4)]
    await until(lambda: limiter.queued("acct-cancel") == 4)
    waiters[1].cancel()  # its client went away
    await until(lambda: limiter.queued("acct-cancel") == 3)
    late = asyncio.create_task(hold(limiter, "acct-cancel", gate))  # its place is free again
    await until(lambda: limiter.queued("acct-cancel") == 4)
    gate.set()
    await asyncio.gather(holder, waiters[0], waiters[2], waiters[3], late)
    assert waiters[1].cancelled()
    assert limiter.queued("acct-cancel") == 0


async def test_a_waiter_cancelled_as_its_turn_comes_hands_the_slot_on(store: Store) -> None:
    limiter = ConcurrencyLimiter(store.client, "api", 1, lease_seconds=60)
    first = asyncio.Event()
    second = asyncio.Event()
    holder = asyncio.create_task(hold(limiter, "acct-handover", first))
    doomed = asyncio.create_task(hold(limiter, "acct-handover", second))
    last = asyncio.create_task(hold(limiter, "acct-handover", second))
    await until(lambda: limiter.queued("acct-handover") == 2)
    first.set()
    await asyncio.sleep(0)  # the holder leaves: the slot is handed to ``doomed``...
    doomed.cancel()  # ...which is cancelled before it runs
    second.set()
    await asyncio.gather(holder, last)  # the slot went on to ``last``
    assert doomed.cancelled()
    async with asyncio.timeout(PATIENCE), limiter.admit("acct-handover"):
        pass  # and nothing leaked


async def test_two_processes_share_the_cluster_wide_limit(redis_url: str) -> None:
    here, there = Store.from_url(redis_url), Store.from_url(redis_url)
    limit_here = ConcurrencyLimiter(here.client, "api", 2, lease_seconds=60, wait_seconds=0.3)
    limit_there = ConcurrencyLimiter(there.client, "api", 2, lease_seconds=60, wait_seconds=5)
    gate = asyncio.Event()
    try:
        held = [asyncio.create_task(hold(limit_here, "acct-two", gate)) for _ in range(2)]
        client = redis.Redis.from_url(redis_url)
        await until(lambda: client.zcard("jg:{acct-two}:inflight:api") == 2)
        # The other process has no local slot taken, but Redis says the account is full.
        with pytest.raises(TooManyConcurrent):
            async with ConcurrencyLimiter(
                there.client, "api", 2, lease_seconds=60, wait_seconds=0.3
            ).admit("acct-two"):
                pass
        # A longer wait there gets a slot once this process gives one back.
        admitted = asyncio.Event()

        async def wait_there() -> None:
            async with limit_there.admit("acct-two"):
                admitted.set()

        waiting = asyncio.create_task(wait_there())
        await asyncio.sleep(0.2)
        assert not admitted.is_set()
        gate.set()
        await asyncio.gather(*held, waiting)
        assert admitted.is_set()
        assert client.zcard("jg:{acct-two}:inflight:api") == 0
        client.close()
        del limit_here
    finally:
        await here.close()
        await there.close()
