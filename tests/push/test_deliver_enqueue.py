"""Commits become pending pushes (push/enqueue.py) on a real Redis: a transaction committed
through the journal reaches every verified subscription of its account that wants its types,
newest state per type, due after the coalescing delay; an unverified subscription and another
account get nothing; the delivery worker is told when to look."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator

import pytest

from gateway.cache.journal import Journal
from gateway.cache.push_subscriptions import DUE, PushSubscriptions, Subscription, due_member
from gateway.cache.store import Store
from gateway.metrics import Metrics
from gateway.push.enqueue import COALESCE_SECONDS, Enqueuer
from tests.push.webpush_gateway import eventually


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(redis_url)
    try:
        yield store
    finally:
        await store.close()


def record(types: list[str] | None) -> Subscription:
    now = int(time.time())
    return Subscription(
        deviceClientId="d",
        url="https://push.example.net/x",
        keys=None,
        verificationCode=secrets.token_hex(16),
        verified=False,
        expires=now + 3600,
        types=types,
        created=now,
    )


async def commit(store: Store, account_id: str, *data_types: str) -> dict[str, str]:
    """One transaction moving each of ``data_types``; their new states."""
    journal = Journal(store.account(account_id))
    async with store.client.pipeline(transaction=True) as pipe:
        for data_type in data_types:
            await journal.log(pipe, data_type, created=[secrets.token_hex(4)])
        changes = journal.committed(await pipe.execute())
    return {change.data_type: change.state for change in changes}


async def test_commits_reach_verified_subscriptions_by_their_types(store: Store) -> None:
    subs = PushSubscriptions(store.client)
    account, other = "a" + secrets.token_hex(6), "a" + secrets.token_hex(6)
    every = await subs.create(account, record(None), login="u")
    email_only = await subs.create(account, record(["Email"]), login="u")
    unverified = await subs.create(account, record(None), login="u")
    for sub_id in (every, email_only, unverified):
        # As if each PushVerification went out: only what the enqueuer adds stays pending.
        _, pending = await subs.pending(account, sub_id)
        await subs.delivered(account, sub_id, pending, now_ms=0, min_interval_ms=0)
    await subs.verified(account, every)
    await subs.verified(account, email_only)

    woken: list[float] = []
    enqueuer = Enqueuer(subs, Metrics(), woken.append, min_interval_seconds=5)
    enqueuer.start()
    try:
        before_ms = int(time.time() * 1000)
        await commit(store, account, "Mailbox")
        states = await commit(store, account, "Email", "Thread")
        await commit(store, other, "Email")

        async def merged() -> bool:
            _, pending = await subs.pending(account, every)
            return pending is not None and len(pending.get("changed", {})) == 3

        await eventually(merged)
    finally:
        await enqueuer.stop()

    _, pending = await subs.pending(account, every)
    assert pending is not None
    assert pending["changed"]["Email"] == states["Email"]
    assert pending["changed"]["Thread"] == states["Thread"]
    _, pending = await subs.pending(account, email_only)
    assert pending is not None and pending["changed"] == {"Email": states["Email"]}
    assert (await subs.pending(account, unverified))[1] is None
    assert await store.client.zscore(DUE, due_member(account, unverified)) is None
    # Due once the coalescing delay has passed (a later change merged, the entry left alone).
    score = await store.client.zscore(DUE, due_member(account, every))
    assert score is not None and score >= before_ms + COALESCE_SECONDS * 1000
    assert woken and set(woken) == {COALESCE_SECONDS}
    assert not [m for m in await store.client.zrange(DUE, 0, -1) if m.decode().startswith(other)]


async def test_what_is_committed_before_stop_is_still_enqueued(store: Store) -> None:
    subs = PushSubscriptions(store.client)
    account = "a" + secrets.token_hex(6)
    sub_id = await subs.create(account, record(None), login="u")
    await subs.verified(account, sub_id)
    enqueuer = Enqueuer(subs, Metrics(), lambda _: None, min_interval_seconds=5)
    enqueuer.start()
    states = await commit(store, account, "Email")
    await enqueuer.stop()  # flushes the outbox before it returns
    _, pending = await subs.pending(account, sub_id)
    assert pending is not None and pending["changed"] == states
    # Stopped: commits are no longer heard.
    await commit(store, account, "Mailbox")
    _, pending = await subs.pending(account, sub_id)
    assert pending is not None and "Mailbox" not in pending["changed"]
