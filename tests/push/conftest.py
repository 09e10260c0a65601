"""Fixtures of the event-source tests: a gateway whose services the test can reach (to drain
its hub), users of it, and keepalive comments frequent enough to show nothing else was sent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from gateway.push import eventsource
from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import Jmap
from tests.push.eventsource_client import PING_MIN, Gateway, states_via_get
from tests.push.webpush_receiver import WebPushReceiver
from tests.servers import Dovecot


async def serve(dovecot: Dovecot, redis_url: str, **settings: object) -> AsyncIterator[Gateway]:
    values = gateway_settings(dovecot.url, redis_url, push_ping_min_seconds=PING_MIN, **settings)
    app = create_app(values)
    async with (
        running_gateway(values, app) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield Gateway(url, app.state.services, client)


@pytest.fixture
async def sse_gateway(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Gateway]:
    async for gateway in serve(dovecot, redis_url):
        yield gateway


@pytest.fixture
async def recheck_gateway(private_dovecot: Dovecot, redis_url: str) -> AsyncIterator[Gateway]:
    """In front of a Dovecot of the test's own (whose passwords a test may change), header
    credentials rechecked as often as the settings allow, never from the cache."""
    settings = {"push_recheck_seconds": 10, "auth_cache_seconds": 0}
    async for gateway in serve(private_dovecot, redis_url, **settings):
        yield gateway


async def new_user(dovecot: Dovecot, gateway: Gateway) -> Jmap:
    """A fresh user whose index the gateway has built (a /get catches up first): a stream's
    states are the index's, which a user never seen before does not have yet."""
    name = dovecot.fresh_user()
    user = await Jmap(gateway.http, name, dovecot.users[name]).start()
    await states_via_get(user)
    return user


@pytest.fixture
async def sse_user(dovecot: Dovecot, sse_gateway: Gateway) -> Jmap:
    return await new_user(dovecot, sse_gateway)


@pytest.fixture
async def sse_other(dovecot: Dovecot, sse_gateway: Gateway) -> Jmap:
    return await new_user(dovecot, sse_gateway)


@pytest.fixture
def quick_keepalive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keepalive comments every 0.2 s (the gateway runs in this process)."""
    monkeypatch.setattr(eventsource, "KEEPALIVE_SECONDS", 0.2)


@pytest.fixture
async def receiver() -> AsyncIterator[WebPushReceiver]:
    """A push service of the test's own (tests/push/webpush_receiver.py) on a free port."""
    async with WebPushReceiver() as r:
        yield r
