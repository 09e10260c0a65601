"""The caught-up mark as a process remembers it: read once, then known until it expires, and
another replica's mark seen at the first look after this process's knowledge ran out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.cache.freshness import FreshMarks, Freshness
from gateway.cache.store import Store


@pytest.fixture
async def counted(redis_url: str) -> AsyncIterator[tuple[Store, list[str]]]:
    sent: list[str] = []
    store = Store.from_url(redis_url, observer=lambda name, _s, _f: sent.append(name))
    yield store, sent
    await store.close()


async def test_a_mark_read_once_is_known_until_it_expires(
    counted: tuple[Store, list[str]], redis_url: str
) -> None:
    store, sent = counted
    other = Store.from_url(redis_url)  # another replica
    try:
        marks = FreshMarks()
        here = Freshness(store.client, "acct-fresh")
        assert not await marks.is_fresh(here)
        assert not await marks.is_fresh(here)  # no mark: asked each time
        assert sent == ["PTTL", "PTTL"]
        await Freshness(other.client, "acct-fresh").mark_fresh(0.5)
        assert await marks.is_fresh(here)
        assert await marks.is_fresh(here)
        assert await marks.is_fresh(here)
        assert sent == ["PTTL"] * 3  # read once, then from memory
        await asyncio.sleep(0.6)
        assert not await marks.is_fresh(here)  # expired: asked again
        assert sent == ["PTTL"] * 4
        await marks.mark_fresh(here, 30)  # this process's own catch-up
        assert await marks.is_fresh(here)
        assert sent == ["PTTL"] * 4 + ["SET"]
    finally:
        await other.close()
