"""Admission under load through a running gateway: requests beyond maxConcurrentRequests wait
their turn instead of an immediate 429, and a flood past the wait queue is refused in the
process (429 with Retry-After) without a Redis command each."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import redis

from gateway.app import create_app
from gateway.cache.limits import QUEUE_PER_SLOT
from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext, Method
from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot
from tests.test_api import CORE, assert_problem, post, request

PATIENCE = 10.0


def commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for name, v in stats.items() if name != "cmdstat_info")


async def test_sixteen_requests_on_four_slots_all_succeed(dovecot: Dovecot, redis_url: str) -> None:
    settings = gateway_settings(dovecot.url, redis_url, max_concurrent_requests=4)
    app = create_app(settings)
    auth = httpx.BasicAuth("alice", dovecot.users["alice"])
    inside = 0
    most = 0

    async def work(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await asyncio.sleep(0.05)
        inside -= 1
        return {}

    limits = httpx.Limits(max_connections=32)
    async with (
        running_gateway(settings, app) as url,
        httpx.AsyncClient(base_url=url, limits=limits, timeout=PATIENCE) as http,
    ):
        app.state.services.registry.add(Method("Probe/work", CORE, work, False, None))
        assert (await post(http, auth, request(["Core/echo", {}, "c"]))).status_code == 200
        answers = await asyncio.gather(
            *(post(http, auth, request(["Probe/work", {}, "w"])) for _ in range(16))
        )
    assert [a.status_code for a in answers] == [200] * 16
    assert most <= 4


async def test_a_flood_past_the_queue_is_refused_without_redis(
    dovecot: Dovecot, redis_url: str
) -> None:
    # GATEWAY_SECRET set, as in production: without it every request reads the shared secret
    # from Redis (so replicas agree on account ids even after Redis lost it: tests/test_secret).
    settings = gateway_settings(dovecot.url, redis_url, max_concurrent_requests=1, secret="k" * 32)
    app = create_app(settings)
    auth = httpx.BasicAuth("alice", dovecot.users["alice"])
    gate = asyncio.Event()
    started = asyncio.Semaphore(0)

    async def wait(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
        started.release()
        await gate.wait()
        return {}

    limits = httpx.Limits(max_connections=64)
    client = redis.Redis.from_url(redis_url)
    async with (
        running_gateway(settings, app) as url,
        httpx.AsyncClient(base_url=url, limits=limits, timeout=PATIENCE) as http,
    ):
        services = app.state.services
        # The push delivery worker polls its due queue twice a second whatever the requests
        # do: stopped, so the count below is what the refusals cost.
        await services.deliveries.stop()
        services.registry.add(Method("Probe/wait", CORE, wait, False, None))
        assert (await post(http, auth, request(["Core/echo", {}, "c"]))).status_code == 200
        account = (await http.get("/jmap/session", auth=auth)).json()["accounts"]
        (account_id,) = account
        held = asyncio.create_task(post(http, auth, request(["Probe/wait", {}, "w"])))
        await started.acquire()
        queued = [
            asyncio.create_task(post(http, auth, request(["Probe/wait", {}, "w"])))
            for _ in range(QUEUE_PER_SLOT)
        ]
        async with asyncio.timeout(PATIENCE):
            while services.api_limiter.queued(account_id) < QUEUE_PER_SLOT:
                await asyncio.sleep(0.01)
        before = commands(client)
        refused = [await post(http, auth, request(["Core/echo", {}, "c"])) for _ in range(20)]
        spent = commands(client) - before
        gate.set()
        served = await asyncio.gather(held, *queued)
    client.close()
    for answer in refused:
        problem = assert_problem(answer, 429, "limit")
        assert problem["limit"] == "maxConcurrentRequests"
        assert answer.headers["retry-after"] == "1"
    assert spent == 0  # authenticated from memory, refused in the process
    assert [a.status_code for a in served] == [200] * (1 + QUEUE_PER_SLOT)
