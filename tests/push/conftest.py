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
from tests.push.eventsource_client import PING_MIN, Gateway
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
async def recheck_gateway(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Gateway]:
    """Header credentials rechecked as often as the settings allow, never from the cache."""
    async for gateway in serve(dovecot, redis_url, push_recheck_seconds=10, auth_cache_seconds=0):
        yield gateway


async def new_user(dovecot: Dovecot, gateway: Gateway) -> Jmap:
    name = dovecot.fresh_user()
    return await Jmap(gateway.http, name, dovecot.users[name]).start()


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
