"""Replicas always agree on account ids, even after Redis lost the secret it kept for them."""

from __future__ import annotations

import httpx
import redis

from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot

MAIL = "urn:ietf:params:jmap:mail"


async def account_of(url: str, auth: httpx.BasicAuth) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.get("/jmap/session", auth=auth)
        assert response.status_code == 200, response.text
        return str(response.json()["primaryAccounts"][MAIL])


def flushall(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.close()


async def test_replicas_agree_after_redis_lost_the_secret(dovecot: Dovecot, redis_url: str) -> None:
    """Two replicas on one Redis, FLUSHALL, one restarts: both give alice one account id
    (the restarted one used to make a new secret while the other kept the old one)."""
    alice = httpx.BasicAuth("alice", dovecot.users["alice"])
    # auth_cache_seconds: the running replica remembers alice's login meanwhile.
    first_settings = gateway_settings(dovecot.url, redis_url, auth_cache_seconds=600)
    async with running_gateway(first_settings) as first:
        async with running_gateway(gateway_settings(dovecot.url, redis_url)) as second:
            before = {await account_of(first, alice), await account_of(second, alice)}
            assert len(before) == 1
        flushall(redis_url)
        async with running_gateway(gateway_settings(dovecot.url, redis_url)) as restarted:
            after = [await account_of(restarted, alice), await account_of(first, alice)]
            after.append(await account_of(restarted, alice))
    assert len(set(after)) == 1


async def test_a_running_replica_writes_the_secret_back(dovecot: Dovecot, redis_url: str) -> None:
    """After FLUSHALL the first replica asked that knew the secret restores it: account ids
    stay, on it and on a replica started afterwards."""
    alice = httpx.BasicAuth("alice", dovecot.users["alice"])
    async with running_gateway(gateway_settings(dovecot.url, redis_url)) as running:
        before = await account_of(running, alice)
        flushall(redis_url)
        assert await account_of(running, alice) == before
        async with running_gateway(gateway_settings(dovecot.url, redis_url)) as started:
            assert await account_of(started, alice) == before


async def test_a_configured_secret_survives_redis(dovecot: Dovecot, redis_url: str) -> None:
    alice = httpx.BasicAuth("alice", dovecot.users["alice"])
    settings = gateway_settings(dovecot.url, redis_url, secret="k" * 32)
    async with running_gateway(settings) as url:
        before = await account_of(url, alice)
        flushall(redis_url)
        assert await account_of(url, alice) == before
