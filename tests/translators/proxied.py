"""A gateway that reaches Dovecot through tests.faultproxy, for tests that break the upstream
connection at chosen commands. Import the fixtures into a test module to use them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import gateway_settings, running_gateway
from tests.faultproxy import LOOPBACK, FaultProxy
from tests.jmapclient import Jmap
from tests.servers import Dovecot


@pytest.fixture
async def proxy(dovecot: Dovecot) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(LOOPBACK, dovecot.imap_port) as running:
        yield running


@pytest.fixture
async def jmap(dovecot: Dovecot, redis_url: str, proxy: FaultProxy) -> AsyncIterator[Jmap]:
    """A fresh user's client of the gateway behind the proxy."""
    settings = gateway_settings(proxy.url, redis_url)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        user = dovecot.fresh_user()
        yield await Jmap(http, user, dovecot.users[user]).start()
