"""What bounds the delivery worker (review 17): one account's stalling push endpoints hold at
most MAX_SENDS_PER_ACCOUNT sends, so another account's push still goes (M4); an unexpected
error in a delivery counts as a failed attempt (L3); expired subscriptions nobody calls about
are erased by the loop's sweep (M1); a name that resolves to a public address at create and to
loopback at send is refused and nothing reaches loopback (L11, DNS rebinding, end to end);
the PushVerification starts no throttle (M6).

Subscriptions live in a real Redis, pushes go to a real local receiver (or respx, the only
mock, for the HTTP side); DNS is stubbed where a test needs a name to answer as it says."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

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
from gateway.metrics import Metrics
from gateway.push import deliveries
from gateway.push.deliveries import MAX_SENDS_PER_ACCOUNT, Deliveries
from gateway.webpush import resolver
from gateway.webpush.client import PushClient
from gateway.webpush.destinations import DestinationPolicy
from gateway.webpush.resolver import MAX_PER_ACCOUNT, RESOLVER
from tests.push.conftest import new_user
from tests.push.eventsource_client import Gateway
from tests.push.webpush_gateway import eventually, serve_pushing, subscribe
from tests.servers import Dovecot
from tests.webpush.receiver import Answer, Received, receiver

LOOPBACK_HTTP = DestinationPolicy(allow_http=True, allowed=(ipaddress.ip_network("127.0.0.1/32"),))


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(redis_url)
    try:
        yield store
    finally:
        await store.close()


def record(url: str, *, verified: bool = False, expires_in: int = 3600) -> Subscription:
    now = int(time.time())
    return Subscription(
        deviceClientId="d",
        url=url,
        keys=None,
        verificationCode=secrets.token_hex(16),
        verified=verified,
        expires=now + expires_in,
        types=None,
        created=now,
    )


def counted(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "jmap_gateway_webpush_deliveries_total", {"outcome": outcome}
    )
    return value or 0.0


def worker(store: Store, metrics: Metrics, **options: Any) -> Deliveries:
    return Deliveries(
        PushSubscriptions(store.client),
        PushClient(10.0),
        LOOPBACK_HTTP,
        None,
        metrics,
        ttl_seconds=600,
        min_interval_seconds=0,
        **options,
    )


async def test_a_stalling_account_never_holds_another_accounts_push(store: Store) -> None:
    """More stalled subscriptions of one account than the worker has slots: the other
    account's verification still arrives while they hang."""
    subs = PushSubscriptions(store.client)
    stalling, fast = "a" + secrets.token_hex(6), "a" + secrets.token_hex(6)

    def answer(request: Received) -> Answer:
        return Answer(silent=True) if request.target.startswith("/stall") else Answer(201)

    async with receiver(answer) as push:
        # Every slot but two could go to the stalling account without the per-account bound.
        sender = worker(store, Metrics(), concurrency=MAX_SENDS_PER_ACCOUNT + 2)
        for n in range(MAX_SENDS_PER_ACCOUNT + 4):
            await subs.create(stalling, record(push.url(f"/stall/{n}", scheme="http")), login="u")
        await subs.create(fast, record(push.url("/fast", scheme="http")), login="v")
        sender.start()
        try:

            async def arrived() -> bool:
                return any(r.target == "/fast" for r in push.received)

            await eventually(arrived)
            stalled = [r for r in push.received if r.target.startswith("/stall")]
            # The stalled sends still hang (silent receiver, 20 s bound): at most the bound.
            assert 0 < len(stalled) <= MAX_SENDS_PER_ACCOUNT
        finally:
            await sender.stop()


async def test_an_unexpected_error_is_a_failed_attempt(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not retried every lease for ever: backoff, attempts counted, dropped after the bound."""
    subs = PushSubscriptions(store.client)
    account = "a" + secrets.token_hex(6)
    url = "http://127.0.0.1:9/push/broken"

    def broken(*_: Any, **__: Any) -> Any:
        raise ValueError("a record the code cannot use")

    monkeypatch.setattr(deliveries, "build", broken)
    metrics = Metrics()
    sender = worker(store, metrics)
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        route = mock.post(url).mock(return_value=httpx.Response(201))
        before_ms = int(time.time() * 1000)
        sub_id = await subs.create(account, record(url), login="u")
        sender.start()
        try:

            async def retried() -> bool:
                _, pending = await subs.pending(account, sub_id)
                return pending is not None and pending.get("attempts") == 1

            await eventually(retried)
            score = await store.client.zscore(DUE, due_member(account, sub_id))
            # The first backoff (seconds), not the claim's lease (60 s at least).
            assert score is not None
            assert score <= before_ms + (deliveries.BACKOFF_FIRST_SECONDS + 5) * 1000
            # As if every attempt but the last had failed already: this one drops it.
            await subs.retry_at(
                account, sub_id, int(time.time() * 1000), deliveries.MAX_ATTEMPTS - 1
            )
            sender.wake()

            async def dropped() -> bool:
                return (await subs.pending(account, sub_id))[1] is None

            await eventually(dropped)
        finally:
            await sender.stop()
    assert route.call_count == 0
    assert counted(metrics, "gave_up") == 1
    assert sub_id in await subs.get_all(account)


async def test_the_loop_erases_expired_subscriptions_nothing_is_due_for(store: Store) -> None:
    subs = PushSubscriptions(store.client)
    account = "a" + secrets.token_hex(6)
    url = "http://127.0.0.1:9/push/expiring"
    sender = worker(store, Metrics(), sweep_seconds=0.2)
    with respx.mock(assert_all_mocked=True) as mock:
        mock.post(url).mock(return_value=httpx.Response(201))
        sub_id = await subs.create(account, record(url, expires_in=2), login="u")
        sender.start()
        try:

            async def verified_sent() -> bool:
                return (await subs.pending(account, sub_id))[1] is None

            await eventually(verified_sent)
            assert await store.client.zscore(DUE, due_member(account, sub_id)) is None

            async def erased() -> bool:
                return await store.client.hget(subscriptions_key(account), sub_id) is None

            # Nothing is due for it and nobody calls: only the sweep can erase it.
            await eventually(erased)
        finally:
            await sender.stop()


class RebindingDns:
    """The first lookup of the name answers a public address, every later one loopback."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.real = resolver.system_getaddrinfo
        self.answers: list[str] = []

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != self.name:
            return self.real(host, port, *args, **kwargs)
        address = "93.184.215.14" if not self.answers else "127.0.0.1"
        self.answers.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]


@pytest.fixture
async def strict_gateway(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Gateway]:
    """http allowed (the receiver is plain), but no destination allow-listed: loopback is
    refused as in production."""
    async for gateway in serve_pushing(dovecot, redis_url, None, webpush_allowed_destinations=""):
        yield gateway


async def test_dns_rebinding_between_create_and_send_is_refused(
    dovecot: Dovecot, strict_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "push.rebind.test"
    dns = RebindingDns(name)
    monkeypatch.setattr(resolver, "system_getaddrinfo", dns)
    user = await new_user(dovecot, strict_gateway)
    metrics = strict_gateway.svc.metrics
    async with receiver() as push:
        await subscribe(user, push.url("/push/rebind", name=name, scheme="http"))
        assert dns.answers[0] == "93.184.215.14"  # the create's check saw a public address

        async def refused() -> bool:
            return counted(metrics, "refused") >= 1

        await eventually(refused)
        await asyncio.sleep(0.2)
    assert dns.answers[1:] == ["127.0.0.1"]
    assert push.received == []


async def test_the_verification_push_does_not_start_the_throttle(store: Store) -> None:
    """Review 17 M6: the PushVerification is no StateChange, so the first change after the
    client verifies goes at once, not a min interval after the verification."""
    subs = PushSubscriptions(store.client)
    account = "a" + secrets.token_hex(6)
    url = "http://127.0.0.1:9/push/throttle"
    interval_ms = 600_000  # far past the test's waits: only no throttle lets the change go
    sender = Deliveries(
        subs,
        PushClient(10.0),
        LOOPBACK_HTTP,
        None,
        Metrics(),
        ttl_seconds=600,
        min_interval_seconds=interval_ms / 1000,
    )
    with respx.mock(assert_all_mocked=True) as mock:
        route = mock.post(url).mock(return_value=httpx.Response(201))
        sub_id = await subs.create(account, record(url), login="u")
        sender.start()
        try:

            async def verification_sent() -> bool:
                return route.call_count == 1 and (await subs.pending(account, sub_id))[1] is None

            await eventually(verification_sent)
            await subs.verified(account, sub_id)
            now_ms = int(time.time() * 1000)
            await subs.enqueue_changes(
                account, {"Email": "e1-7"}, now_ms=now_ms, delay_ms=0, min_interval_ms=interval_ms
            )
            sender.wake()

            async def change_sent() -> bool:
                return route.call_count == 2

            await eventually(change_sent)
        finally:
            await sender.stop()
    assert b"StateChange" in route.calls[1].request.content


async def test_hanging_lookups_of_one_account_hold_only_its_share(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review 17 H1 at delivery: an account's sends whose names never answer hold at most
    MAX_PER_ACCOUNT lookup threads; its further sends are retried soon (counted), and
    another account's push goes meanwhile."""
    released = threading.Event()
    hanging: list[str] = []
    real = resolver.system_getaddrinfo

    def dns(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if not str(host).endswith(".hang.test"):
            return real(host, port, *args, **kwargs)
        hanging.append(str(host))
        released.wait(60)
        raise socket.gaierror(socket.EAI_AGAIN, "no answer (test)")

    monkeypatch.setattr(resolver, "system_getaddrinfo", dns)
    subs = PushSubscriptions(store.client)
    slow, fast = "a" + secrets.token_hex(6), "a" + secrets.token_hex(6)
    async with receiver() as push:
        sender = worker(store, Metrics())
        ids = [
            await subs.create(slow, record(f"http://s{n}.hang.test:{push.port}/p"), login="u")
            for n in range(MAX_PER_ACCOUNT + 1)
        ]
        await subs.create(fast, record(push.url("/fast", scheme="http")), login="v")
        sender.start()
        try:

            async def retried_soon() -> bool:
                attempts = [(await subs.pending(slow, i))[1] or {} for i in ids]
                return any(a.get("attempts") == 1 for a in attempts)

            await eventually(retried_soon)
            await eventually(lambda: _true(any(r.target == "/fast" for r in push.received)))
            assert len(hanging) == MAX_PER_ACCOUNT
            assert RESOLVER.busy == MAX_PER_ACCOUNT
        finally:
            released.set()
            await sender.stop()
    await eventually(lambda: _true(RESOLVER.busy == 0))


async def _true(value: bool) -> bool:
    return value
