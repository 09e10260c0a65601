"""The cross-replica concurrency limit against a real Redis: admission, refusal, and the
script sent once rather than with every request."""

from __future__ import annotations

import pytest

from gateway.cache.limits import ConcurrencyLimiter, TooManyConcurrent
from gateway.cache.store import Store


async def test_the_limit_admits_refuses_and_sends_its_script_once(redis_url: str) -> None:
    names: list[str] = []
    store = Store.from_url(redis_url, observer=lambda name, _s, _f: names.append(name))
    limiter = ConcurrencyLimiter(store.client, "api", 1, lease_seconds=60)
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
    assert names.count("EVALSHA") >= 3
