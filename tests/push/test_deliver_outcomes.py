"""What a push service's answer does to a subscription, through the real receiver: 410 destroys
it (RFC 8030 7.3), 429 with Retry-After is retried no earlier than it asks, another 4xx drops
the push but keeps the subscription, and a plain (keyless) push is JSON as RFC 8620 7.2 says."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest

from gateway.cache.push_subscriptions import PushSubscriptions
from tests.push.conftest import new_user
from tests.push.eventsource_client import Gateway
from tests.push.webpush_gateway import eventually, listed, serve_pushing, subscribe
from tests.push.webpush_receiver import HANG, Reply, Request, WebPushReceiver
from tests.servers import Dovecot

DUE = "jg:push-due"  # contracts A: the server-wide due queue, member "<accountId> <subId>"


@pytest.fixture
async def pushing(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Gateway]:
    async for gateway in serve_pushing(dovecot, redis_url, None):
        yield gateway


def store(gateway: Gateway) -> PushSubscriptions:
    return PushSubscriptions(gateway.svc.store.client)


async def no_pending(store: PushSubscriptions, account_id: str, sub_id: str) -> bool:
    return (await store.pending(account_id, sub_id))[1] is None


async def test_410_destroys_the_subscription(
    dovecot: Dovecot, pushing: Gateway, receiver: WebPushReceiver
) -> None:
    receiver.answer = lambda _: Reply(410)
    user = await new_user(dovecot, pushing)
    sub_id = await subscribe(user, receiver.url())
    await receiver.wait_for(1)
    subscriptions = store(pushing)

    async def gone() -> bool:
        return sub_id not in await subscriptions.get_all(user.account_id)

    await eventually(gone)
    assert await listed(user) == []
    member = f"{user.account_id} {sub_id}"
    assert await pushing.svc.store.client.zscore(DUE, member) is None
    assert len(receiver.requests) == 1


async def test_429_is_retried_no_earlier_than_retry_after(
    dovecot: Dovecot, pushing: Gateway, receiver: WebPushReceiver
) -> None:
    answered_at: list[float] = []

    def answer(request: Request) -> Reply:
        if not answered_at:
            answered_at.append(time.time())
            return Reply(429, {"Retry-After": "30"})
        return Reply(201)

    receiver.answer = answer
    user = await new_user(dovecot, pushing)
    sub_id = await subscribe(user, receiver.url())
    (first,) = await receiver.wait_for(1)
    subscriptions = store(pushing)
    member = f"{user.account_id} {sub_id}"
    redis = pushing.svc.store.client

    async def retry_due() -> float | None:
        _, pending = await subscriptions.pending(user.account_id, sub_id)
        if pending is None or pending.get("attempts") != 1:
            return None
        score = await redis.zscore(DUE, member)
        return None if score is None else float(score)

    due = await eventually(retry_due)
    # The retry is scheduled no earlier than Retry-After asks (the recorded answer and the
    # schedule compared, not a measured wait), and nothing was sent meanwhile.
    assert due >= (answered_at[0] + 30) * 1000 - 1, (due, answered_at)
    assert len(receiver.requests) == 1
    # Time passes (the schedule is moved to now): the retry goes out, the same push.
    await redis.zadd(DUE, {member: int(time.time() * 1000)}, xx=True)
    second = (await receiver.wait_for(2))[1]
    assert json.loads(second.body) == json.loads(first.body)
    assert json.loads(second.body)["@type"] == "PushVerification"
    await eventually(lambda: no_pending(subscriptions, user.account_id, sub_id))
    assert await listed(user) == [sub_id]
    assert len(receiver.requests) == 2


async def test_other_4xx_drops_the_push_keeps_the_subscription(
    dovecot: Dovecot, pushing: Gateway, receiver: WebPushReceiver
) -> None:
    receiver.answer = lambda _: Reply(400)
    user = await new_user(dovecot, pushing)
    sub_id = await subscribe(user, receiver.url())
    (request,) = await receiver.wait_for(1)
    # RFC 8620 7.2: a plain push is the UTF-8 JSON object, as application/json.
    assert request.headers["content-type"].startswith("application/json")
    assert "content-encoding" not in request.headers
    assert "authorization" not in request.headers  # no VAPID key configured
    assert json.loads(request.body)["pushSubscriptionId"] == sub_id
    subscriptions = store(pushing)
    await eventually(lambda: no_pending(subscriptions, user.account_id, sub_id))
    member = f"{user.account_id} {sub_id}"
    assert await pushing.svc.store.client.zscore(DUE, member) is None
    assert await listed(user) == [sub_id]
    assert len(receiver.requests) == 1


async def test_a_stalled_push_service_does_not_hold_up_others(
    dovecot: Dovecot, pushing: Gateway, receiver: WebPushReceiver
) -> None:
    receiver.answer = lambda request: HANG if request.path == "/slow" else Reply(201)
    user = await new_user(dovecot, pushing)
    slow = await subscribe(user, receiver.url("/slow"), device="slow")
    await receiver.wait_for(1, "/slow")  # on its way, unanswered: its send holds one slot
    fast = await subscribe(user, receiver.url("/fast"), device="fast")
    (request,) = await receiver.wait_for(1, "/fast")
    assert json.loads(request.body)["pushSubscriptionId"] == fast
    subscriptions = store(pushing)
    await eventually(lambda: no_pending(subscriptions, user.account_id, fast))
    _, pending = await subscriptions.pending(user.account_id, slow)
    assert pending is not None and pending.get("verify") is True
