"""The delivery worker's answers to a push service, with the HTTP side mocked by respx (the
only mock: outbound HTTP) and the subscriptions in a real Redis: an unreachable service or a
5xx is retried with a growing backoff, the last attempt drops the push and keeps the
subscription, a redirect is not followed, and a StateChange goes out with its headers."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from gateway.cache.push_subscriptions import (
    DUE,
    PushSubscriptions,
    Subscription,
    due_member,
    subscriptions_key,
)
from gateway.cache.store import Store
from gateway.config import Settings
from gateway.metrics import Metrics
from gateway.push import deliveries
from gateway.push.deliveries import MAX_ATTEMPTS, STATE_TOPIC, Deliveries, backoff_seconds
from gateway.webpush import message
from gateway.webpush.client import PushClient
from gateway.webpush.destinations import RESOLVE_TIMEOUT_SECONDS, DestinationPolicy
from tests.push.webpush_gateway import eventually
from tests.servers import Dovecot

URL = "http://127.0.0.1:9/push/respx"


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(redis_url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def worker(
    dovecot: Dovecot, redis_url: str, store: Store, metrics: Metrics
) -> AsyncIterator[Deliveries]:
    settings = Settings(
        imap_url=dovecot.url,
        redis_url=redis_url,
        webpush_allow_http=True,
        webpush_allowed_destinations="127.0.0.1",
    )
    worker = Deliveries(
        PushSubscriptions(store.client),
        PushClient.from_settings(settings),
        DestinationPolicy.from_settings(settings),
        None,
        metrics,
        ttl_seconds=600,
        min_interval_seconds=0,
    )
    worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


def record(*, verified: bool) -> Subscription:
    now = int(time.time())
    return Subscription(
        deviceClientId="d",
        url=URL,
        keys=None,
        verificationCode=secrets.token_hex(16),
        verified=verified,
        expires=now + 3600,
        types=None,
        created=now,
    )


def counted(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "jmap_gateway_webpush_deliveries_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_unreachable_is_retried_later(
    store: Store, metrics: Metrics, worker: Deliveries
) -> None:
    subs = PushSubscriptions(store.client)
    account = "a" + secrets.token_hex(6)
    with respx.mock(assert_all_mocked=True) as mock:
        route = mock.post(URL).mock(side_effect=httpx.ConnectError("refused"))
        before_ms = int(time.time() * 1000)
        sub_id = await subs.create(account, record(verified=False), login="u")
        worker.wake()

        async def retried() -> bool:
            _, pending = await subs.pending(account, sub_id)
            return pending is not None and pending.get("attempts") == 1

        await eventually(retried)
    assert route.call_count == 1
    score = await store.client.zscore(DUE, due_member(account, sub_id))
    # The first backoff: at least half of BACKOFF_FIRST_SECONDS after the attempt.
    assert score is not None
    assert score >= before_ms + deliveries.BACKOFF_FIRST_SECONDS * 1000 / 2
    assert counted(metrics, "retry") == 1


async def test_the_last_attempt_drops_the_push_and_keeps_the_subscription(
    store: Store, metrics: Metrics, worker: Deliveries
) -> None:
    subs = PushSubscriptions(store.client)
    account = "a" + secrets.token_hex(6)
    with respx.mock(assert_all_mocked=True) as mock:
        route = mock.post(URL).mock(return_value=httpx.Response(503))
        sub_id = await subs.create(account, record(verified=False), login="u")
        # As if every attempt but the last had failed already.
        await subs.retry_at(account, sub_id, int(time.time() * 1000), MAX_ATTEMPTS - 1)
        worker.wake()

        async def dropped() -> bool:
            return (await subs.pending(account, sub_id))[1] is None

        await eventually(dropped)
    assert route.call_count == 1
    assert sub_id in await subs.get_all(account)
    assert await store.client.zscore(DUE, due_member(account, sub_id)) is None
    assert counted(metrics, "gave_up") == 1


async def test_a_redirect_is_not_followed(
    store: Store, metrics: Metrics, worker: Deliveries
) -> None:
    subs = PushSubscriptions(store.client)
    account = "a" + secrets.token_hex(6)
    elsewhere = "http://127.0.0.1:9/elsewhere"
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        route = mock.post(URL).mock(
            return_value=httpx.Response(307, headers={"Location": elsewhere})
        )
        followed = mock.post(elsewhere).mock(return_value=httpx.Response(201))
        sub_id = await subs.create(account, record(verified=False), login="u")
        worker.wake()

        async def dropped() -> bool:
            return (await subs.pending(account, sub_id))[1] is None

        await eventually(dropped)
    assert route.call_count == 1
    assert followed.call_count == 0
    assert counted(metrics, "rejected") == 1


async def test_a_state_change_with_its_headers(
    store: Store, metrics: Metrics, worker: Deliveries
) -> None:
    subs = PushSubscriptions(store.client)
    account = "a" + secrets.token_hex(6)
    with respx.mock(assert_all_mocked=True) as mock:
        route = mock.post(URL).mock(return_value=httpx.Response(201))
        sub_id = await subs.create(account, record(verified=True), login="u")
        await subs.verified(account, sub_id)  # drops the PushVerification: already verified
        states = {"Email": "e1-42", "Mailbox": "e1-40"}
        now_ms = int(time.time() * 1000)
        await subs.enqueue_changes(account, states, now_ms=now_ms, delay_ms=0, min_interval_ms=0)
        worker.wake()

        async def sent() -> bool:
            return route.call_count >= 1 and (await subs.pending(account, sub_id))[1] is None

        await eventually(sent)
    (call,) = route.calls
    request = call.request
    assert json.loads(request.content) == {"@type": "StateChange", "changed": {account: states}}
    assert request.headers["ttl"] == "600"
    assert request.headers["urgency"] == "normal"
    assert request.headers["topic"] == STATE_TOPIC
    assert request.headers["content-type"].startswith("application/json")
    assert counted(metrics, "delivered") == 1


def test_backoff_grows_and_honours_retry_after_within_its_cap() -> None:
    for attempts in range(1, MAX_ATTEMPTS):
        ceiling = min(
            deliveries.BACKOFF_MAX_SECONDS, deliveries.BACKOFF_FIRST_SECONDS * 2 ** (attempts - 1)
        )
        delay = backoff_seconds(attempts, None)
        assert ceiling / 2 <= delay <= ceiling
    assert backoff_seconds(1, 120.0) >= 120.0
    assert backoff_seconds(1, 10**9) <= deliveries.RETRY_AFTER_MAX_SECONDS


def test_a_claim_outlasts_the_slowest_send() -> None:
    # The client looks the name up (5 s at most), then connects and exchanges, each within its
    # timeout (webpush/client.py); the lease must outlast all three, for any allowed timeout.
    for timeout in (1.0, 10.0, 60.0):
        lease = deliveries.claim_lease_seconds(timeout)
        assert lease > RESOLVE_TIMEOUT_SECONDS + 2 * timeout
        assert lease == pytest.approx(max(60.0, RESOLVE_TIMEOUT_SECONDS + 2 * timeout + 30))


async def test_an_expired_subscription_is_never_pushed_to_and_is_erased(
    store: Store, metrics: Metrics, worker: Deliveries
) -> None:
    subs = PushSubscriptions(store.client)
    account = "a" + secrets.token_hex(6)
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        route = mock.post(URL).mock(return_value=httpx.Response(201))
        sub_id = await subs.create(account, record(verified=True), login="u")
        # RFC 8620 7.2: "MUST NOT make further requests to this resource after this time".
        await subs.update(account, sub_id, {"expires": int(time.time()) - 1})
        await subs.retry_at(account, sub_id, int(time.time() * 1000), 0)
        worker.wake()

        async def erased() -> bool:
            raw = await store.client.hget(subscriptions_key(account), sub_id)
            return raw is None and counted(metrics, "expired") == 1

        await eventually(erased)
    assert route.call_count == 0
    assert await store.client.zscore(DUE, due_member(account, sub_id)) is None


async def test_a_state_change_too_large_goes_in_parts(
    store: Store, metrics: Metrics, worker: Deliveries, monkeypatch: pytest.MonkeyPatch
) -> None:
    subs = PushSubscriptions(store.client)
    account = "a" + secrets.token_hex(6)
    states = {"Email": "e1-42", "Mailbox": "e1-40", "Thread": "e1-41"}
    whole = len(deliveries.state_change(account, states))
    # Push services' limit, lowered so that the three types do not fit one push (RFC 8030 7.2
    # makes it 4096 octets; with the five push types a StateChange is far below it).
    limit = whole - 10
    monkeypatch.setattr(message, "MAX_PUSH_OCTETS", limit)
    with respx.mock(assert_all_mocked=True) as mock:
        route = mock.post(URL).mock(return_value=httpx.Response(201))
        sub_id = await subs.create(account, record(verified=True), login="u")
        await subs.verified(account, sub_id)
        now_ms = int(time.time() * 1000)
        await subs.enqueue_changes(account, states, now_ms=now_ms, delay_ms=0, min_interval_ms=0)
        worker.wake()

        async def all_sent() -> bool:
            return route.call_count >= 2 and (await subs.pending(account, sub_id))[1] is None

        await eventually(all_sent)
    parts = [json.loads(call.request.content)["changed"][account] for call in route.calls]
    assert all(len(call.request.content) <= limit for call in route.calls)
    assert len(parts) == 2, parts
    assert {**parts[0], **parts[1]} == states
    assert not set(parts[0]) & set(parts[1])
    # Review 17 L4: the parts complete each other, so none may replace another at the push
    # service (RFC 8030 5.4 replaces only a message with the same Topic): the cut part goes
    # without one; what remains goes whole, so it may carry it.
    assert route.calls[0].request.headers.get("topic") is None
