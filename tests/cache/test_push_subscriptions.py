"""The push subscription store against a real Redis and a real three-node Redis Cluster: the
verification pending at create, merges of newer states only (the same rule as
gateway.push.states.newer), a merge racing a delivery kept and due again, claims whose lease
runs out coming due again, the per-account bound, lazy expiry, and ``jg:push-subscribed``.

Every test uses accounts of its own: the due queue is server-wide, so assertions look only at
the test's own members (read raw from Redis)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from gateway.cache.codec import octets, unpack
from gateway.cache.push_subscriptions import (
    DUE,
    EXPIRY,
    SUBSCRIBED,
    PushSubscriptions,
    Subscription,
    TooManySubscriptions,
    decode,
    due_member,
    encode,
    login_key,
    pending_key,
    sent_key,
    subscriptions_key,
)
from gateway.cache.store import Store
from gateway.push.states import newer
from tests.rediscluster import RedisClusterSet

HOUR = 3600


@pytest.fixture(params=["single", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "single":
        url = request.getfixturevalue("redis_url")
    else:
        cluster: RedisClusterSet = request.getfixturevalue("redis_cluster")
        url = cluster.url
    store = Store.from_url(url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def subs(store: Store) -> PushSubscriptions:
    return PushSubscriptions(store.client)


def account() -> str:
    return "a" + secrets.token_hex(6)


def record(
    *, expires_in: int = HOUR, verified: bool = False, types: list[str] | None = None
) -> Subscription:
    now = int(time.time())
    return Subscription(
        deviceClientId="dev",
        url="https://push.example/x",
        keys=None,
        verificationCode=secrets.token_hex(16),
        verified=verified,
        expires=now + expires_in,
        types=types,
        created=now,
    )


def now_ms() -> int:
    return int(time.time() * 1000)


async def due_score(store: Store, account_id: str, sub_id: str) -> float | None:
    score = await store.client.zscore(DUE, due_member(account_id, sub_id))
    return None if score is None else float(score)


async def raw_pending(store: Store, account_id: str, sub_id: str) -> object:
    raw = await store.client.hget(pending_key(account_id), sub_id)
    return None if raw is None else unpack(octets(raw))


async def verified_sub(
    subs: PushSubscriptions, account_id: str, types: list[str] | None = None
) -> str:
    sub_id = await subs.create(account_id, record(types=types), login="alice")
    await subs.verified(account_id, sub_id)
    return sub_id


async def test_create_stores_the_record_a_due_verification_and_the_login(
    store: Store, subs: PushSubscriptions
) -> None:
    a = account()
    rec = record()
    before = now_ms()
    sub_id = await subs.create(a, rec, login="alice@example.org")
    assert await subs.get_all(a) == {sub_id: rec}
    assert await raw_pending(store, a, sub_id) == {"verify": True, "attempts": 0}
    score = await due_score(store, a, sub_id)
    assert score is not None and before <= score <= now_ms()
    assert await store.client.get(login_key(a)) == b"alice@example.org"
    # Not verified: nothing else is pushed (RFC 8620 7.2), and it does not want watching.
    assert (
        await subs.enqueue_changes(
            a, {"Email": "e-1"}, now_ms=now_ms(), delay_ms=0, min_interval_ms=0
        )
        == 0
    )
    assert await subs.subscribed_until(a) is None
    got, pending = await subs.pending(a, sub_id)
    assert got == rec and pending == {"verify": True, "attempts": 0}


async def test_an_empty_login_never_replaces_the_stored_one(
    store: Store, subs: PushSubscriptions
) -> None:
    """A bearer-token session naming nobody must not turn off background watching of the
    account's other devices (review L7)."""
    a = account()
    first = await subs.create(a, record(), login="")
    assert await store.client.exists(login_key(a)) == 0
    await subs.update(a, first, {"types": None}, login="bob")
    await subs.update(a, first, {"types": None}, login="")
    await subs.create(a, record(), login="")
    assert await subs.login(a) == "bob"
    await subs.update(a, first, {"types": None}, login="carol")
    assert await subs.login(a) == "carol"


async def test_destroying_the_last_subscription_erases_the_login(
    store: Store, subs: PushSubscriptions
) -> None:
    a = account()
    first = await subs.create(a, record(), login="alice")
    second = await subs.create(a, record(), login="alice")
    await subs.destroy(a, first)
    assert await subs.login(a) == "alice"
    await subs.destroy(a, second)
    assert await store.client.exists(login_key(a)) == 0
    assert await store.client.zscore(EXPIRY, a) is None


async def test_verifying_drops_the_verification_and_marks_the_account_subscribed(
    store: Store, subs: PushSubscriptions
) -> None:
    a = account()
    rec = record()
    sub_id = await subs.create(a, rec, login="alice")
    await subs.verified(a, sub_id)
    assert await raw_pending(store, a, sub_id) is None
    assert await subs.subscribed_until(a) == rec["expires"]
    # The worker's verification path keeps the login the user's last /set stored.
    assert await subs.login(a) == "alice"
    assert (await subs.get_all(a))[sub_id]["verified"] is True


async def test_changes_merge_by_type_and_only_newer_states_win(
    store: Store, subs: PushSubscriptions
) -> None:
    a = account()
    every = await verified_sub(subs, a)
    mailboxes = await verified_sub(subs, a, types=["Mailbox"])
    others = await verified_sub(subs, a, types=["Todo"])
    t = now_ms()
    n = await subs.enqueue_changes(
        a, {"Email": "x-5", "Mailbox": "x-9"}, now_ms=t, delay_ms=100, min_interval_ms=0
    )
    assert n == 2
    assert await raw_pending(store, a, every) == {"changed": {"Email": "x-5", "Mailbox": "x-9"}}
    assert await raw_pending(store, a, mailboxes) == {"changed": {"Mailbox": "x-9"}}
    assert await raw_pending(store, a, others) is None
    assert await due_score(store, a, every) == t + 100
    # An older state never replaces a newer one; a longer modseq is a larger one.
    await subs.enqueue_changes(a, {"Email": "x-3"}, now_ms=t, delay_ms=0, min_interval_ms=0)
    assert await raw_pending(store, a, every) == {"changed": {"Email": "x-5", "Mailbox": "x-9"}}
    await subs.enqueue_changes(a, {"Mailbox": "x-10"}, now_ms=t, delay_ms=0, min_interval_ms=0)
    assert await raw_pending(store, a, mailboxes) == {"changed": {"Mailbox": "x-10"}}
    # An existing due entry is left alone (ZADD NX).
    assert await due_score(store, a, every) == t + 100


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("e-5", "e-6"),
        ("e-6", "e-5"),
        ("e-9", "e-10"),
        ("e-10", "e-9"),
        ("e-5", "f-1"),
        ("e-5", "e-5"),
        ("a-b-7", "a-b-8"),
        ("e-1234567890123456789", "e-1234567890123456790"),
        ("e-05", "e-4"),
        ("junk", "other"),
        ("e-1", "junk"),
    ],
)
async def test_the_merge_follows_the_push_states_rule(
    store: Store, subs: PushSubscriptions, old: str, new: str
) -> None:
    """The Lua compare against gateway.push.states.newer, pair by pair."""
    a = account()
    sub_id = await verified_sub(subs, a)
    t = now_ms()
    await subs.enqueue_changes(a, {"Email": old}, now_ms=t, delay_ms=0, min_interval_ms=0)
    await subs.enqueue_changes(a, {"Email": new}, now_ms=t, delay_ms=0, min_interval_ms=0)
    expected = new if newer(old, new) else old
    assert await raw_pending(store, a, sub_id) == {"changed": {"Email": expected}}


async def test_a_merge_racing_a_delivery_is_kept_and_due_again(
    store: Store, subs: PushSubscriptions
) -> None:
    a = account()
    sub_id = await verified_sub(subs, a)
    t = now_ms()
    await subs.enqueue_changes(
        a, {"Email": "e-1", "Mailbox": "e-1"}, now_ms=t, delay_ms=0, min_interval_ms=0
    )
    claimed = await subs.claim(t, 10_000, 60_000)
    assert (a, sub_id) in claimed
    _, sent = await subs.pending(a, sub_id)
    assert sent == {"changed": {"Email": "e-1", "Mailbox": "e-1"}}
    # While the push is on its way, a new Email state arrives: its ZADD NX finds the claim.
    await subs.enqueue_changes(a, {"Email": "e-2"}, now_ms=t + 5, delay_ms=0, min_interval_ms=0)
    assert await due_score(store, a, sub_id) == t + 60_000
    await subs.delivered(a, sub_id, sent, now_ms=t + 10, min_interval_ms=1000)
    # Mailbox went out unchanged and is done; Email's newer state waits, due after the gap.
    assert await raw_pending(store, a, sub_id) == {"changed": {"Email": "e-2"}, "attempts": 0}
    assert await due_score(store, a, sub_id) == t + 10 + 1000
    assert await store.client.hget(sent_key(a), sub_id) == str(t + 10).encode()
    # The next change honours the per-subscription gap after the last send.
    _, sent = await subs.pending(a, sub_id)
    await subs.delivered(a, sub_id, sent, now_ms=t + 20, min_interval_ms=1000)
    assert await raw_pending(store, a, sub_id) is None
    assert await due_score(store, a, sub_id) is None
    await subs.enqueue_changes(a, {"Email": "e-3"}, now_ms=t + 30, delay_ms=0, min_interval_ms=1000)
    assert await due_score(store, a, sub_id) == t + 20 + 1000


async def test_a_verification_delivered_leaves_nothing_due(
    store: Store, subs: PushSubscriptions
) -> None:
    a = account()
    sub_id = await subs.create(a, record(), login="alice")
    assert (a, sub_id) in await subs.claim(now_ms(), 10_000, 60_000)
    _, sent = await subs.pending(a, sub_id)
    await subs.delivered(a, sub_id, sent, now_ms=now_ms(), min_interval_ms=0)
    assert await raw_pending(store, a, sub_id) is None
    assert await due_score(store, a, sub_id) is None


async def test_a_verification_delivered_does_not_hold_back_the_first_state_change(
    store: Store, subs: PushSubscriptions
) -> None:
    """The PushVerification is not a push of changes: the client verifying and an APPEND
    right after must not wait out the per-subscription interval (review M6)."""
    a = account()
    sub_id = await subs.create(a, record(), login="alice")
    assert (a, sub_id) in await subs.claim(now_ms(), 10_000, 60_000)
    _, sent = await subs.pending(a, sub_id)
    t = now_ms()
    await subs.delivered(a, sub_id, sent, now_ms=t, min_interval_ms=5000)
    assert await store.client.hexists(sent_key(a), sub_id) == 0
    await subs.verified(a, sub_id)
    await subs.enqueue_changes(a, {"Email": "e-1"}, now_ms=t + 10, delay_ms=0, min_interval_ms=5000)
    assert await due_score(store, a, sub_id) == t + 10
    # A state change delivered does start the interval.
    assert (a, sub_id) in await subs.claim(t + 10, 10_000, 60_000)
    _, sent = await subs.pending(a, sub_id)
    await subs.delivered(a, sub_id, sent, now_ms=t + 20, min_interval_ms=5000)
    await subs.enqueue_changes(a, {"Email": "e-2"}, now_ms=t + 30, delay_ms=0, min_interval_ms=5000)
    assert await due_score(store, a, sub_id) == t + 20 + 5000


async def test_an_unreleased_claim_comes_due_again_after_its_lease(
    store: Store, subs: PushSubscriptions
) -> None:
    a = account()
    sub_id = await subs.create(a, record(), login="alice")
    t = now_ms()
    assert (a, sub_id) in await subs.claim(t, 10_000, 1000)
    # Within the lease nobody else takes it; after it, another claimer does.
    assert (a, sub_id) not in await subs.claim(t + 500, 10_000, 1000)
    assert (a, sub_id) in await subs.claim(t + 1001, 10_000, 1000)
    assert await due_score(store, a, sub_id) == t + 1001 + 1000


async def test_retry_keeps_the_attempts_and_reschedules(
    store: Store, subs: PushSubscriptions
) -> None:
    a = account()
    sub_id = await subs.create(a, record(), login="alice")
    t = now_ms()
    await subs.claim(t, 10_000, 60_000)
    await subs.retry_at(a, sub_id, t + 4000, 2)
    assert await raw_pending(store, a, sub_id) == {
        "verify": True,
        "attempts": 2,
        "notBefore": t + 4000,
    }
    assert await due_score(store, a, sub_id) == t + 4000
    # Giving up drops the pending entry and its due entry.
    _, pending = await subs.pending(a, sub_id)
    await subs.drop(a, sub_id, pending, now_ms=t, min_interval_ms=0)
    assert await raw_pending(store, a, sub_id) is None
    assert await due_score(store, a, sub_id) is None
    assert await store.client.hget(sent_key(a), sub_id) is None


async def test_destroy_erases_everything_of_the_subscription(
    store: Store, subs: PushSubscriptions
) -> None:
    a = account()
    kept = await verified_sub(subs, a)
    gone = await verified_sub(subs, a)
    t = now_ms()
    await subs.enqueue_changes(a, {"Email": "e-1"}, now_ms=t, delay_ms=0, min_interval_ms=0)
    _, sent = await subs.pending(a, gone)
    await subs.delivered(a, gone, sent, now_ms=t, min_interval_ms=0)
    await subs.enqueue_changes(a, {"Email": "e-2"}, now_ms=t, delay_ms=0, min_interval_ms=0)
    assert await subs.destroy(a, gone)
    assert not await subs.destroy(a, gone)
    for key in (subscriptions_key(a), pending_key(a), sent_key(a)):
        assert not await store.client.hexists(key, gone)
    assert await due_score(store, a, gone) is None
    assert await subs.subscribed_until(a) is not None
    assert await subs.destroy(a, kept)
    assert await subs.subscribed_until(a) is None
    assert await store.client.zscore(SUBSCRIBED, a) is None


async def test_the_per_account_bound_counts_live_subscriptions_only(
    store: Store, subs: PushSubscriptions
) -> None:
    a = account()
    expired = await subs.create(a, record(expires_in=-1), login="alice", max_per_account=2)
    await subs.create(a, record(), login="alice", max_per_account=2)
    await subs.create(a, record(), login="alice", max_per_account=2)
    assert not await store.client.hexists(subscriptions_key(a), expired)
    with pytest.raises(TooManySubscriptions):
        await subs.create(a, record(), login="alice", max_per_account=2)
    assert len(await subs.get_all(a)) == 2


async def test_expired_subscriptions_are_erased_when_read(
    store: Store, subs: PushSubscriptions
) -> None:
    a = account()
    sub_id = await subs.create(a, record(expires_in=2), login="alice")
    await subs.verified(a, sub_id)
    assert await subs.subscribed_until(a) is not None
    await store.client.hset(subscriptions_key(a), sub_id, await _expired_copy(store, a, sub_id))
    # An expired subscription is never pushed to.
    assert (
        await subs.enqueue_changes(
            a, {"Email": "e-1"}, now_ms=now_ms(), delay_ms=0, min_interval_ms=0
        )
        == 0
    )
    assert await subs.get_all(a) == {}
    assert not await store.client.hexists(subscriptions_key(a), sub_id)
    assert await due_score(store, a, sub_id) is None
    assert await subs.subscribed_until(a) is None


async def test_a_sweep_erases_expired_subscriptions_of_an_owner_who_never_calls(
    store: Store, subs: PushSubscriptions
) -> None:
    """Review M1: nothing but the sweep looks at this account again."""
    a = account()
    soon = await subs.create(a, record(), login="alice")
    await subs.verified(a, soon)
    unverified = await subs.create(a, record(), login="alice")
    later = await subs.create(a, record(expires_in=2 * HOUR), login="alice")
    now = int(time.time())
    assert await store.client.zscore(EXPIRY, a) is not None
    # Time passes: the first two expire (their records rewritten as if an hour went by).
    for sub_id in (soon, unverified):
        await store.client.hset(subscriptions_key(a), sub_id, await _expired_copy(store, a, sub_id))
    await store.client.zadd(EXPIRY, {a: now - 1})
    await store.client.zadd(SUBSCRIBED, {a: now - 1})
    assert await subs.sweep_expired(now, 10_000) >= 1
    left = await store.client.hkeys(subscriptions_key(a))
    assert [octets(k).decode() for k in left] == [later]
    assert await due_score(store, a, soon) is None
    assert await due_score(store, a, unverified) is None
    assert await raw_pending(store, a, unverified) is None
    # Re-scored to the next expiry; no verified subscription left, so not subscribed.
    rest, _ = await subs.pending(a, later)
    assert rest is not None and await store.client.zscore(EXPIRY, a) == rest["expires"]
    assert await subs.subscribed_until(a) is None
    assert await subs.login(a) == "alice"
    # The last one expiring takes the account out of the index with its login.
    await store.client.hset(subscriptions_key(a), later, await _expired_copy(store, a, later))
    await store.client.zadd(EXPIRY, {a: now - 1})
    await subs.sweep_expired(now, 10_000)
    assert await store.client.exists(subscriptions_key(a), login_key(a)) == 0
    assert await store.client.zscore(EXPIRY, a) is None


async def test_a_sweep_takes_at_most_its_limit_and_leaves_live_accounts_alone(
    store: Store, subs: PushSubscriptions
) -> None:
    accounts = [account() for _ in range(3)]
    for a in accounts:
        await subs.create(a, record(), login="alice")
    live = account()
    await subs.create(live, record(), login="alice")
    base = 1_000  # epoch seconds long past: only this test's accounts score there
    for i, a in enumerate(accounts):
        await store.client.zadd(EXPIRY, {a: base + i})
    ghost = account()
    await store.client.zadd(SUBSCRIBED, {ghost: base})
    assert await subs.sweep_expired(base + 1, 10_000) == 2
    assert await subs.subscribed_until(ghost) is None
    # Nothing was expired: each swept account is re-scored to its true expiry.
    true = record()["expires"]
    for a in accounts[:2]:
        score = await store.client.zscore(EXPIRY, a)
        assert score is not None and true - 5 <= score <= true
    assert await store.client.zscore(EXPIRY, accounts[2]) == base + 2
    assert await subs.sweep_expired(base + 5, 1) == 1
    assert await store.client.zscore(EXPIRY, accounts[2]) != base + 2
    assert len(await subs.get_all(live)) == 1


async def test_an_update_sets_the_expiry_index_back_to_the_earliest(
    store: Store, subs: PushSubscriptions
) -> None:
    a = account()
    first = await subs.create(a, record(expires_in=2 * HOUR), login="alice")
    await subs.create(a, record(), login="alice")
    early = record()["expires"]
    # Say a write computed before the second create landed after it: the index says too late.
    await store.client.zadd(EXPIRY, {a: early + HOUR})
    await subs.update(a, first, {"types": ["Email"]})
    score = await store.client.zscore(EXPIRY, a)
    assert score is not None and score <= early


async def _expired_copy(store: Store, account_id: str, sub_id: str) -> bytes:
    raw = await store.client.hget(subscriptions_key(account_id), sub_id)
    assert raw is not None
    rec = decode(raw)
    rec["expires"] = int(time.time()) - 1
    return encode(rec)


async def test_a_lost_due_entry_is_scheduled_again_by_the_next_read(
    store: Store, subs: PushSubscriptions
) -> None:
    """A crash between create's account script and its ZADD leaves the verification pending
    without a due entry: the account's next read schedules it."""
    a = account()
    sub_id = await subs.create(a, record(), login="alice")
    await store.client.zrem(DUE, due_member(a, sub_id))
    await subs.get_all(a)
    assert await due_score(store, a, sub_id) is not None


async def test_subscribed_is_raised_back_when_a_concurrent_write_lowered_it(
    store: Store, subs: PushSubscriptions
) -> None:
    """A destroy computed before another subscription's verification may write its removal
    after that verification's score: the destroy's re-read puts the score back."""
    a = account()
    first = await verified_sub(subs, a)
    second = await subs.create(a, record(), login="alice")
    # The verification of ``second`` lands in the account; its ZADD is overtaken by the
    # destroy of ``first``, which (having read before) removes the account.
    await subs.verified(a, second)
    await store.client.zrem(SUBSCRIBED, a)
    await subs.destroy(a, first)
    assert await subs.subscribed_until(a) is not None


async def test_an_account_without_subscriptions_costs_one_exists(subs: PushSubscriptions) -> None:
    assert (
        await subs.enqueue_changes(
            account(), {"Email": "e-1"}, now_ms=now_ms(), delay_ms=0, min_interval_ms=0
        )
        == 0
    )


async def test_the_accounts_keys_share_one_node_of_the_cluster(
    redis_cluster: RedisClusterSet,
) -> None:
    store = Store.from_url(redis_cluster.url)
    try:
        subs = PushSubscriptions(store.client)
        a = account()
        sub_id = await verified_sub(subs, a)
        await subs.enqueue_changes(
            a, {"Email": "e-1"}, now_ms=now_ms(), delay_ms=0, min_interval_ms=0
        )
        owner = redis_cluster.owner(subscriptions_key(a))
        for node in redis_cluster.nodes:
            with node.client() as client:
                held = {k.decode() for k in client.keys(f"jg:{{{a}}}:*")}
            if node.port == owner.port:
                assert held == {subscriptions_key(a), pending_key(a), login_key(a)}
            else:
                assert held == set()
        assert await subs.destroy(a, sub_id)
    finally:
        await store.close()


async def test_concurrent_creates_never_pass_the_bound(
    store: Store, subs: PushSubscriptions
) -> None:
    a = account()

    async def one() -> bool:
        try:
            await subs.create(a, record(), login="alice", max_per_account=3)
        except TooManySubscriptions:
            return False
        return True

    outcomes = await asyncio.gather(*(one() for _ in range(12)))
    assert outcomes.count(True) == 3
    assert await store.client.hlen(subscriptions_key(a)) == 3
    assert await store.client.hlen(pending_key(a)) == 3


async def test_a_delivery_settled_after_a_destroy_leaves_nothing(
    store: Store, subs: PushSubscriptions
) -> None:
    a = account()
    sub_id = await subs.create(a, record(), login="alice")
    t = now_ms()
    assert (a, sub_id) in await subs.claim(t, 10_000, 60_000)
    _, sent = await subs.pending(a, sub_id)
    # The user destroys it while the verification is on its way.
    assert await subs.destroy(a, sub_id)
    await subs.delivered(a, sub_id, sent, now_ms=t, min_interval_ms=1000)
    for key in (subscriptions_key(a), pending_key(a), sent_key(a)):
        assert await store.client.exists(key) == 0
    assert await due_score(store, a, sub_id) is None
