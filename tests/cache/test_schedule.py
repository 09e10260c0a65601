"""The schedule of held submissions and their octets against a real Redis: one claim per due
entry across many claimers, leases that only their holder moves, takeover after a lease ran
out, the "." mark that forbids a resend, cancel against claim, and the per-account bounds."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from gateway.cache.codec import pack
from gateway.cache.held import HeldMessage, HeldMessages
from gateway.cache.schedule import Claim, Schedule
from gateway.cache.store import Store
from tests.rediscluster import RedisClusterSet
from tests.translators.submitting import held_usage


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(redis_url)
    try:
        yield store
    finally:
        await store.close()


def schedule_of(store: Store, lease_seconds: float = 60.0, name: str | None = None) -> Schedule:
    """A schedule of its own, so no other test's entries are due in it."""
    return Schedule(
        store.client,
        name=name or f"t-{secrets.token_hex(4)}",
        lease_seconds=lease_seconds,
        sweep_seconds=0.2,
    )


async def test_an_entry_never_confirmed_falls_due_unconfirmed(store: Store) -> None:
    name = f"t-{secrets.token_hex(4)}"
    schedule = Schedule(store.client, name=name, tentative_seconds=0.2)
    await schedule.add("acct", "s1", "alice")
    # Its creator died before release_at: after the grace a claim finds it unconfirmed.
    claim = await claim_when_due(schedule)
    assert not claim.held.confirmed
    assert not await schedule.withdraw("acct", "s1")  # held by the claim
    assert await schedule.finish(claim)
    # A creation that fails withdraws its entry; a confirmed one cannot be withdrawn.
    await schedule.add("acct", "s2", "alice")
    assert await schedule.withdraw("acct", "s2")
    await schedule.add("acct", "s3", "alice")
    await schedule.release_at("acct", "s3", await now_ms(store) + 60_000)
    assert not await schedule.withdraw("acct", "s3")
    assert await entry_count(store, name) == 1


async def claim_when_due(schedule: Schedule) -> Claim:
    """The next claim, once an entry falls due (a lease or a delay of a fraction of a second)."""
    for _ in range(200):
        claim = await schedule.claim()
        if claim is not None:
            return claim
        await asyncio.sleep(0.05)
    raise AssertionError("nothing fell due")


async def entry_count(store: Store, name: str) -> int:
    """The entries the schedule ``name`` holds, every state, read from Redis itself."""
    return int(await store.client.hlen(f"jg:{{{name}}}:entries"))


async def now_ms(store: Store) -> int:
    seconds, micros = await store.client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_a_tentative_entry_is_not_due_until_released(store: Store) -> None:
    schedule = schedule_of(store)
    assert await schedule.add("acct", "s1", "alice")
    assert not await schedule.add("acct", "s1", "alice")  # entered once
    assert await schedule.claim() is None
    remaining = await schedule.next_due()
    assert remaining is not None and remaining > 60  # the creation grace, not "now"
    assert await schedule.release_at("acct", "s1", await now_ms(store))
    claim = await schedule.claim()
    assert claim is not None
    assert (claim.held.account_id, claim.held.submission_id) == ("acct", "s1")
    assert claim.held.username == "alice"
    assert (claim.held.attempts, claim.held.data_started, claim.held.canceled) == (0, False, False)
    assert claim.held.confirmed
    assert await schedule.claim() is None  # held now: not due again


async def test_many_claimers_take_each_due_entry_once(store: Store, redis_url: str) -> None:
    name = f"t-{secrets.token_hex(4)}"
    schedule = schedule_of(store, name=name)
    now = await now_ms(store)
    ids = [f"s{n}" for n in range(40)]
    for submission_id in ids:
        await schedule.add("acct", submission_id, "alice")
        await schedule.release_at("acct", submission_id, now)
    # Eight replicas' worth of claimers, each with its own client.
    stores = [Store.from_url(redis_url) for _ in range(8)]

    async def drain(mine: Schedule) -> list[str]:
        taken = []
        while (claim := await mine.claim()) is not None:
            taken.append(claim.held.submission_id)
        return taken

    try:
        results = await asyncio.gather(*(drain(schedule_of(s, name=name)) for s in stores))
    finally:
        for other in stores:
            await other.close()
    taken = [submission_id for result in results for submission_id in result]
    assert sorted(taken) == sorted(ids)
    assert all(results)  # the claims were spread, not one claimer alone


async def test_only_the_holder_moves_an_entry_and_an_expired_lease_is_taken_over(
    store: Store,
) -> None:
    name = f"t-{secrets.token_hex(4)}"
    schedule = schedule_of(store, lease_seconds=0.3, name=name)
    await schedule.add("acct", "s1", "alice")
    await schedule.release_at("acct", "s1", await now_ms(store))
    first = await schedule.claim()
    assert first is not None
    assert await schedule.renew(first)
    assert await schedule.claim() is None
    # The holder dies: nothing renews. The lease runs out and the entry is due again.
    taken = await claim_when_due(schedule)
    assert taken.token != first.token and taken.held.submission_id == "s1"
    # The old holder learns it lost the lease and can no longer move the entry.
    assert not await schedule.renew(first)
    assert not await schedule.mark_data(first)
    assert not await schedule.finish(first)
    assert await entry_count(store, name) == 1
    assert await schedule.finish(taken)
    assert await entry_count(store, name) == 0


async def test_a_mark_before_the_dot_survives_a_takeover(store: Store) -> None:
    schedule = schedule_of(store, lease_seconds=0.3)
    await schedule.add("acct", "s1", "alice")
    await schedule.release_at("acct", "s1", await now_ms(store))
    first = await schedule.claim()
    assert first is not None and not first.held.data_started
    assert await schedule.mark_data(first)
    taken = await claim_when_due(schedule)
    assert taken.token != first.token and taken.held.data_started
    assert await schedule.cancel("acct", "s1") == "claimed"


async def test_a_transient_failure_is_retried_later_and_counted(store: Store) -> None:
    schedule = schedule_of(store)
    await schedule.add("acct", "s1", "alice")
    await schedule.release_at("acct", "s1", await now_ms(store))
    claim = await schedule.claim()
    assert claim is not None
    assert await schedule.retry(claim, 0.2)
    assert await schedule.claim() is None
    again = await claim_when_due(schedule)
    assert again.held.attempts == 1
    # The first claim's token no longer holds it.
    assert not await schedule.finish(claim)
    # A stopping replica gives it back unsent: due at once, no attempt counted.
    assert await schedule.release(again)
    last = await claim_when_due(schedule)
    assert last.held.attempts == 1
    assert await schedule.finish(last)


async def test_cancel_wins_only_against_no_claim(store: Store) -> None:
    schedule = schedule_of(store)
    await schedule.add("acct", "waiting", "alice")
    await schedule.release_at("acct", "waiting", await now_ms(store) + 60_000)
    assert await schedule.cancel("acct", "waiting") == "canceled"
    assert await schedule.cancel("acct", "waiting") == "canceled"  # said twice, same answer
    assert not await schedule.release_at("acct", "waiting", await now_ms(store))
    assert await schedule.forget("acct", "waiting")
    assert await schedule.cancel("acct", "waiting") == "missing"

    await schedule.add("acct", "sending", "alice")
    await schedule.release_at("acct", "sending", await now_ms(store))
    claim = await schedule.claim()
    assert claim is not None
    assert await schedule.cancel("acct", "sending") == "claimed"
    assert not await schedule.forget("acct", "sending")  # only a canceled entry is forgotten
    assert await schedule.finish(claim)


async def test_a_cancel_whose_cleanup_died_is_found_by_a_claim(store: Store) -> None:
    schedule = schedule_of(store)
    await schedule.add("acct", "s1", "bob")
    await schedule.release_at("acct", "s1", await now_ms(store) + 60_000)
    assert await schedule.cancel("acct", "s1") == "canceled"
    # The canceling process died before forget: the sweep makes the entry due long before
    # its release time, and a claim finds it canceled.
    claim = await claim_when_due(schedule)
    assert claim.held.canceled
    assert await schedule.finish(claim)


async def test_held_octets_are_bounded_per_account_and_uncharged_when_dropped(
    store: Store,
) -> None:
    account = f"acct-{secrets.token_hex(4)}"
    envelope = {"mailFrom": "alice@example.com", "rcptTo": ["bob@example.com"]}

    def message(octets: bytes) -> HeldMessage:
        return HeldMessage(envelope, octets)

    def charge(octets: bytes) -> int:
        return len(pack([envelope, octets]))

    big, small = b"x" * 600, b"y\r\n\x00" * 50
    held = HeldMessages(store.client, account, max_count=2, max_octets=charge(big) + charge(small))
    assert await held.keep("s1", message(big)) == "kept"
    assert await held.keep("s1", message(big)) == "kept"  # kept once, charged once
    assert await held_usage(store.client, account) == (1, charge(big))
    assert await held.keep("s2", message(small + b"!")) == "tooLarge"
    assert await held.keep("s2", message(small)) == "kept"
    assert await held.keep("s3", message(b"z")) == "tooMany"
    assert await held.read("s2") == message(small)  # byte-exact
    assert await held_usage(store.client, account) == (2, charge(big) + charge(small))
    assert await held.drop("s1")
    assert not await held.drop("s1")
    assert await held.read("s1") is None
    assert await held_usage(store.client, account) == (1, charge(small))
    assert await held.keep("s3", message(big)) == "kept"
    await held.drop("s2")
    await held.drop("s3")
    assert await held_usage(store.client, account) == (0, 0)
    assert await store.client.exists(f"jg:{{{account}}}:held-charges") == 0
    # Another account's bound is its own.
    other = HeldMessages(store.client, f"{account}-other", max_count=1, max_octets=charge(big))
    assert await other.keep("s1", message(big)) == "kept"
    await other.drop("s1")


async def test_the_schedule_and_held_octets_work_on_a_cluster_each_in_one_slot(
    redis_cluster: RedisClusterSet,
) -> None:
    store = Store.from_url(redis_cluster.url)
    name = f"t-{secrets.token_hex(4)}"
    account = f"acct-{secrets.token_hex(4)}"
    try:
        schedule = schedule_of(store, lease_seconds=0.3, name=name)
        held = HeldMessages(store.client, account)
        message = HeldMessage({"from": "a@example.com"}, b"octets")
        assert await held.keep("s1", message) == "kept"
        await schedule.add(account, "s1", "alice")
        await schedule.release_at(account, "s1", await now_ms(store))
        claim = await claim_when_due(schedule)
        assert await schedule.mark_data(claim)
        assert await schedule.cancel(account, "s1") == "claimed"
        taken = await claim_when_due(schedule)  # the lease ran out
        assert taken.token != claim.token and taken.held.data_started
        assert await held.read("s1") == message
        # Every schedule key is on the node serving the {schedule} tag; the octets on the
        # account's.
        owner = redis_cluster.owner(f"jg:{{{name}}}:due")
        for node in redis_cluster.nodes:
            with node.client() as client:
                keys = {k.decode() for k in client.keys(f"jg:{{{name}}}:*")}
            assert bool(keys) == (node.port == owner.port), keys
        assert await held.drop("s1")
        assert await schedule.finish(taken)
    finally:
        await store.close()
