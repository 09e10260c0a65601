"""Credential checks take upstream connections; no single client address or user name can take
them all, and identical credentials arriving together are checked once."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI

from gateway.app import create_app
from gateway.credentials import Credentials
from gateway.imap.connection import ImapConnection
from tests.conftest import gateway_settings, running_gateway
from tests.servers import FRESH_PASSWORD, Dovecot
from tests.test_login_throttle import get_session

CHECK_SECONDS = 0.3


@contextlib.asynccontextmanager
async def slow_gateway(
    dovecot: Dovecot, redis_url: str, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI, Counter[str]]]:
    """A gateway whose upstream logins each take CHECK_SECONDS more, so that checks overlap;
    yields the peak of checks running at once per client address."""
    settings = gateway_settings(
        dovecot.url,
        redis_url,
        trusted_proxies="127.0.0.1",
        auth_cache_seconds=0,
        login_failures_per_address=0,
        **overrides,
    )
    app = create_app(settings)
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    async with (
        running_gateway(settings, app) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        pool = app.state.services.pool
        connect = pool._connector

        async def slow_connect(credentials: Credentials) -> tuple[ImapConnection, str]:
            assert credentials.origin is not None
            address = credentials.origin.address
            running[address] += 1
            peak[address] = max(peak[address], running[address])
            try:
                await asyncio.sleep(CHECK_SECONDS)
                return await connect(credentials)
            finally:
                running[address] -= 1

        pool._connector = slow_connect
        yield http, app, peak


async def test_one_address_gets_its_share_of_the_checks(dovecot: Dovecot, redis_url: str) -> None:
    """pool_max_total 16: 4 checks at once, 1 of them per address. A flood of guesses from
    one address queues behind its own share while another address is served."""
    async with slow_gateway(dovecot, redis_url, pool_max_total=16) as (http, _, peak):
        flood = [
            asyncio.create_task(get_session(http, f"t-flood-{i}", "wrong", "203.0.113.40"))
            for i in range(12)
        ]
        await asyncio.sleep(CHECK_SECONDS / 3)
        other = await get_session(http, "bob", dovecot.users["bob"], "198.51.100.40")
        assert other.status_code == 200
        assert not all(task.done() for task in flood)  # bob did not wait behind the flood
        assert [r.status_code for r in await asyncio.gather(*flood)] == [401] * 12
    assert peak["203.0.113.40"] == 1


async def test_past_the_wait_a_share_taken_is_429(dovecot: Dovecot, redis_url: str) -> None:
    async with slow_gateway(
        dovecot, redis_url, pool_max_total=16, pool_wait_timeout=CHECK_SECONDS / 3
    ) as (http, _, _peak):
        first, second = await asyncio.gather(
            get_session(http, "t-one", "wrong", "203.0.113.41"),
            get_session(http, "t-two", "wrong", "203.0.113.41"),
        )
    assert sorted([first.status_code, second.status_code]) == [401, 429]
    throttled = first if first.status_code == 429 else second
    assert throttled.headers["retry-after"] == "1"
    assert "address" in throttled.json()["detail"]


async def test_identical_credentials_are_checked_once(dovecot: Dovecot, redis_url: str) -> None:
    user = dovecot.fresh_user()
    async with slow_gateway(dovecot, redis_url) as (http, app, _peak):
        replies = await asyncio.gather(
            *(get_session(http, user, FRESH_PASSWORD, "192.0.2.42") for _ in range(10))
        )
        assert [r.status_code for r in replies] == [200] * 10
        assert app.state.services.pool.stats().opened == 1
