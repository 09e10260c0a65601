"""At least once (issue 17: "a replica dying mid-delivery loses no push that was due"): a worker
that claimed a push and died mid-send (cancelled while the push service had not answered) holds
it only for its lease; then it is due again and another worker delivers it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from gateway.cache.push_subscriptions import PushSubscriptions
from gateway.metrics import Metrics
from gateway.push.deliveries import Deliveries
from gateway.webpush.client import PushClient
from gateway.webpush.destinations import DestinationPolicy
from tests.push.conftest import new_user
from tests.push.eventsource_client import Gateway
from tests.push.webpush_gateway import eventually, serve_pushing, subscribe
from tests.push.webpush_receiver import HANG, Reply, Request, WebPushReceiver
from tests.servers import Dovecot

# Short, so the dead worker's claim comes due again soon; the test waits on events only.
LEASE_SECONDS = 1.0


@pytest.fixture
async def pushing(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Gateway]:
    async for gateway in serve_pushing(dovecot, redis_url, None):
        yield gateway


def worker(gateway: Gateway, metrics: Metrics) -> Deliveries:
    """A delivery worker as another replica runs it, on the same Redis."""
    settings = gateway.svc.settings
    return Deliveries(
        PushSubscriptions(gateway.svc.store.client),
        PushClient.from_settings(settings),
        DestinationPolicy.from_settings(settings),
        None,
        metrics,
        ttl_seconds=settings.webpush_ttl_seconds,
        min_interval_seconds=settings.webpush_min_interval_seconds,
        lease_seconds=LEASE_SECONDS,
        stop_seconds=0,
    )


def delivered(metrics: Metrics) -> float:
    sample = metrics.registry.get_sample_value(
        "jmap_gateway_webpush_deliveries_total", {"outcome": "delivered"}
    )
    return sample or 0.0


async def test_a_push_claimed_by_a_dead_worker_is_delivered_by_another(
    dovecot: Dovecot, pushing: Gateway, receiver: WebPushReceiver
) -> None:
    def answer(request: Request) -> Reply | None:
        return HANG if len(receiver.requests) == 1 else Reply(201)

    receiver.answer = answer
    # Only the test's two workers deliver.
    await pushing.svc.deliveries.stop()
    dying, taking_over = Metrics(), Metrics()
    first = worker(pushing, dying)
    first.start()
    user = await new_user(dovecot, pushing)
    sub_id = await subscribe(user, receiver.url())
    (sent,) = await receiver.wait_for(1)  # claimed and on its way; no answer comes

    await first.stop()  # STOP_SECONDS 0: the send in flight is cancelled, nothing settled
    store = PushSubscriptions(pushing.svc.store.client)
    _, pending = await store.pending(user.account_id, sub_id)
    assert pending is not None and pending.get("verify") is True

    second = worker(pushing, taking_over)
    second.start()
    try:
        again = (await receiver.wait_for(2))[1]

        async def settled() -> bool:
            return (await store.pending(user.account_id, sub_id))[1] is None

        await eventually(settled)
    finally:
        await second.stop()
    assert json.loads(again.body) == json.loads(sent.body)
    assert json.loads(again.body)["@type"] == "PushVerification"
    assert delivered(taking_over) == 1
    assert delivered(dying) == 0
    assert len(receiver.requests) == 2
