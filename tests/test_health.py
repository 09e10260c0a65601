"""/healthz and /readyz against real servers: readiness follows Redis and the upstream, and
probes share one cached check instead of hammering the upstream."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import gateway_settings, running_gateway
from tests.faultproxy import FaultProxy
from tests.servers import Dovecot, RedisServer, refused_port


async def test_healthz_answers_without_credentials(dovecot: Dovecot, redis_url: str) -> None:
    settings = gateway_settings(dovecot.url, redis_url)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"


async def test_readyz_follows_redis_and_the_upstream(
    private_dovecot: Dovecot, private_redis: RedisServer
) -> None:
    settings = gateway_settings(private_dovecot.url, private_redis.url, ready_cache_seconds=0)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:

        async def readyz() -> tuple[int, dict[str, object]]:
            response = await http.get("/readyz")
            return response.status_code, response.json()

        assert await readyz() == (200, {"status": "ready", "checks": {"redis": "ok", "imap": "ok"}})

        private_redis.stop()
        status, body = await readyz()
        assert (status, body["status"]) == (503, "unready")
        assert body["checks"] == {"redis": "unreachable", "imap": "ok"}
        # The process itself is fine: liveness must not restart it for an outage elsewhere.
        assert (await http.get("/healthz")).status_code == 200
        private_redis.start()
        assert (await readyz())[0] == 200

        private_dovecot.stop()
        status, body = await readyz()
        assert status == 503
        assert body["checks"] == {"redis": "ok", "imap": "unreachable"}
        assert str(private_dovecot.imap_port) not in str(body)
        private_dovecot.start()
        assert (await readyz())[0] == 200


async def test_an_upstream_that_never_greets_is_a_timeout(redis_url: str) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, says nothing
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    settings = gateway_settings(f"imap://127.0.0.1:{port}", redis_url)
    try:
        async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.get("/readyz")
    finally:
        listener.close()
    assert response.status_code == 503
    assert response.json()["checks"] == {"redis": "ok", "imap": "timeout"}


async def test_probes_share_one_cached_check(dovecot: Dovecot, redis_url: str) -> None:
    async with FaultProxy("127.0.0.1", dovecot.imap_port) as proxy:
        settings = gateway_settings(proxy.url, redis_url, ready_cache_seconds=60)
        async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
            together = await asyncio.gather(*(http.get("/readyz") for _ in range(20)))
            after = [await http.get("/readyz") for _ in range(5)]
        assert {r.status_code for r in together + after} == {200}
        # Each check is one connection that is greeted and logs out: the proxy saw one.
        assert [c for c in proxy.commands() if c.endswith(b" LOGOUT")] == [b"G1 LOGOUT"]


async def test_an_unreachable_redis_cluster_is_unready_not_an_error(dovecot: Dovecot) -> None:
    # redis-py's cluster client says so with exceptions that are not RedisErrors.
    with refused_port() as port:
        nowhere = f"redis+cluster://127.0.0.1:{port}"
        settings = gateway_settings(dovecot.url, nowhere, secret="s" * 32, ready_cache_seconds=0)
        auth = httpx.BasicAuth("alice", dovecot.users["alice"])
        async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
            ready = await http.get("/readyz")
            session = await http.get("/jmap/session", auth=auth)
            api = await http.post(
                "/jmap/api/",
                content='{"using": ["urn:ietf:params:jmap:core"], "methodCalls": []}',
                auth=auth,
                headers={"content-type": "application/json"},
            )
        assert ready.status_code == 503
        assert ready.json()["checks"]["redis"] == "unreachable"
        assert session.status_code == 200  # needs no Redis
        assert api.status_code == 503
        assert api.headers["content-type"] == "application/problem+json"
