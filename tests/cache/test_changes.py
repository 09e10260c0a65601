"""State strings and change logs against a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.cache.changes import CannotCalculateChanges
from gateway.cache.store import Store


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store(aioredis.Redis.from_url(redis_url))
    yield store
    await store.close()


async def test_new_account_starts_at_zero(store: Store) -> None:
    state = await store.account("a1").state("Mailbox")
    assert state.endswith("-0")
    assert await store.account("a1").state("Mailbox") == state


async def test_created_updated_destroyed_since_a_state(store: Store) -> None:
    account = store.account("a1")
    start = await account.state("Mailbox")
    await account.record("Mailbox", created=["m1", "m2", "m3"])
    middle = await account.state("Mailbox")
    await account.record("Mailbox", updated=["m1"], destroyed=["m2"], created=["m4"])
    await account.record("Mailbox", destroyed=["m4"])
    changes = await account.changes("Mailbox", middle, None)
    assert (changes.created, sorted(changes.updated), changes.destroyed) == ([], ["m1"], ["m2"])
    assert changes.new_state == await account.state("Mailbox")
    assert not changes.has_more_changes
    # From the start, m2 and m4 were born and died in the window: the client never saw them.
    everything = await account.changes("Mailbox", start, None)
    assert (sorted(everything.created), everything.updated, everything.destroyed) == (
        ["m1", "m3"],
        [],
        [],
    )


async def test_an_id_destroyed_revived_and_destroyed_again(store: Store) -> None:
    """A message flagged \\Deleted, unflagged, flagged again: a client that held it must
    learn it is gone; a client that came after the first deletion must learn nothing."""
    account = store.account("a" + "lapse")
    await account.record("Email", created=["e1"])
    held = await account.state("Email")
    await account.record("Email", destroyed=["e1"])
    gone = await account.state("Email")
    await account.record("Email", created=["e1"])
    back = await account.state("Email")
    await account.record("Email", destroyed=["e1"])
    assert (await account.changes("Email", held, None)).destroyed == ["e1"]
    from_gone = await account.changes("Email", gone, None)
    assert (from_gone.created, from_gone.updated, from_gone.destroyed) == ([], [], [])
    assert (await account.changes("Email", back, None)).destroyed == ["e1"]
    # Revived for good: an update for the client that held it. Only the last lapse is kept,
    # so the client that came in the first one hears of an update too, of an id it does not
    # hold: it fetches it, which is what a creation would have made it do.
    await account.record("Email", created=["e1"])
    assert (await account.changes("Email", held, None)).updated == ["e1"]
    assert (await account.changes("Email", gone, None)).updated == ["e1"]
    assert (await account.changes("Email", back, None)).updated == ["e1"]


async def test_max_changes_gives_intermediate_states(store: Store) -> None:
    account = store.account("a1")
    start = await account.state("Email")
    await account.record("Email", created=[f"e{i}" for i in range(5)])
    seen: list[str] = []
    state = start
    while True:
        changes = await account.changes("Email", state, 2)
        assert len(changes.created) <= 2
        seen += changes.created
        state = changes.new_state
        if not changes.has_more_changes:
            break
    assert seen == [f"e{i}" for i in range(5)]
    assert state == await account.state("Email")


async def test_types_are_independent(store: Store) -> None:
    account = store.account("a1")
    before = await account.state("Thread")
    await account.record("Email", created=["e1"])
    assert await account.state("Thread") == before


async def test_lost_data_means_cannot_calculate(store: Store) -> None:
    account = store.account("a1")
    await account.record("Mailbox", created=["m1"])
    old = await account.state("Mailbox")
    await store.client.flushall()
    await account.record("Mailbox", created=["m1"])
    with pytest.raises(CannotCalculateChanges):
        await account.changes("Mailbox", old, None)


@pytest.mark.parametrize("state", ["", "garbage", "abc-", "abc-x1", "-5"])
async def test_malformed_states(store: Store, state: str) -> None:
    with pytest.raises(CannotCalculateChanges):
        await store.account("a1").changes("Mailbox", state, None)


async def test_state_from_the_future(store: Store) -> None:
    account = store.account("a1")
    epoch = (await account.state("Mailbox")).rpartition("-")[0]
    with pytest.raises(CannotCalculateChanges):
        await account.changes("Mailbox", f"{epoch}-99", None)


async def test_accounts_are_separate(store: Store) -> None:
    await store.account("a1").record("Mailbox", created=["m1"])
    other = store.account("a2")
    changes = await other.changes("Mailbox", await other.state("Mailbox"), None)
    assert changes.created == []


async def test_every_key_of_an_account_shares_its_hash_tag(store: Store) -> None:
    await store.account("a1").record("Mailbox", created=["m1"], destroyed=["m1"])
    keys = [k.decode() for k in await store.client.keys("*")]
    assert keys and all(k.startswith("jg:{a1}:") for k in keys)


async def test_server_secret_is_shared(store: Store, redis_url: str) -> None:
    other = Store(aioredis.Redis.from_url(redis_url))
    first = await store.server_secret()
    assert len(first) == 32
    assert await other.server_secret() == first
    await other.close()


async def test_paging_reports_creations_changed_again_later(store: Store) -> None:
    """An id created inside a page but updated after its cut is created in that page."""
    account = store.account("a1")
    start = await account.state("Mailbox")
    await account.record("Mailbox", created=["x"])
    await account.record("Mailbox", created=["a", "b", "c"])
    await account.record("Mailbox", minor=["x"])
    pages = []
    state = start
    while True:
        page = await account.changes("Mailbox", state, 2)
        assert len(page.created) + len(page.updated) + len(page.destroyed) <= 2
        pages.append(page)
        state = page.new_state
        if not page.has_more_changes:
            break
    assert [(sorted(p.created), p.updated) for p in pages] == [
        (["a", "x"], []),
        (["b", "c"], []),
        ([], ["x"]),
    ]
    assert state == await account.state("Mailbox")
