"""The timed Redis client against a real redis-server: one observation per round trip, named
by command, never by key."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.cache.store import Store
from tests.servers import free_port

Observation = tuple[str, str | None]


async def test_round_trips_are_named_by_command(redis_url: str) -> None:
    seen: list[Observation] = []
    store = Store.from_url(redis_url, observer=lambda name, _s, fail: seen.append((name, fail)))
    client = store.client
    try:
        await client.set("jg:{acct-secret}:k", "v")
        await client.get("jg:{acct-secret}:k")
        async with client.pipeline(transaction=True) as pipe:
            pipe.incr("jg:{acct-secret}:n").expire("jg:{acct-secret}:n", 60)
            await pipe.execute()
        async with client.pipeline(transaction=False) as pipe:
            pipe.get("a").get("b")
            await pipe.execute()
        async with client.pipeline(transaction=True) as pipe:
            await pipe.watch("jg:{acct-secret}:k")
            await pipe.get("jg:{acct-secret}:k")
            pipe.multi()
            pipe.set("jg:{acct-secret}:k", "w")
            await pipe.execute()
        script = client.register_script("return 1")
        await script()
    finally:
        await store.close()
    names = [name for name, _ in seen]
    assert names[:4] == ["SET", "GET", "MULTI", "PIPELINE"]
    assert names[4:7] == ["WATCH", "GET", "MULTI"]
    assert "EVALSHA" in names[7:]
    assert all(fail is None for name, fail in seen if name != "EVALSHA")
    assert not any("acct-secret" in name for name in names)


async def test_a_failed_round_trip_is_reported_with_its_kind() -> None:
    seen: list[Observation] = []
    store = Store.from_url(
        f"redis://127.0.0.1:{free_port()}/0",
        timeout=1,
        observer=lambda name, _s, fail: seen.append((name, fail)),
    )
    try:
        with pytest.raises(RedisConnectionError):
            await store.client.get("k")
    finally:
        await store.close()
    assert seen == [("GET", "connection")]
