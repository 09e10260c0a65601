"""Fixtures: real Dovecot, Cyrus and Redis servers, and real gateways served by uvicorn on
loopback (one in front of Dovecot, one in front of Cyrus)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import pytest
import redis
from fastapi import FastAPI

from gateway.app import create_app
from gateway.config import Settings
from gateway.server import listeners
from gateway.server import server as gateway_server
from tests.cyrus import Cyrus
from tests.jmapclient import Jmap
from tests.rediscluster import RedisClusterSet
from tests.sentinel import SentinelSet
from tests.servers import Dovecot, RedisServer, free_port, free_ports, make_data_dir
from tests.smtp_servers import Postfix, Sink

Server = TypeVar("Server", Dovecot, Cyrus, RedisServer, Postfix, Sink)
# The master user of sending_dovecot: Postfix lets it send as any user (AUTH PLAIN with the
# user as authorization identity), as GATEWAY_SMTP_SERVICE_USERNAME does.
SERVICE_USER = ("jmap-submit", "submit-service-pw")
# The master user of master_dovecot (issue 17: watching without the user's password), and the
# separator it may also log in with as "user*gwmaster".
MASTER_USER = ("gwmaster", "gw-master-pw-7c1e")
MASTER_SEPARATOR = "*"
# strict_postfix's message_size_limit.
STRICT_SIZE_LIMIT = 100_000


def serving(server: Server) -> Iterator[Server]:
    """Start ``server`` for a fixture, then stop it and remove its directory."""
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    yield from serving(Dovecot(make_data_dir("jg-dovecot-")))


@pytest.fixture(scope="session")
def trusting_dovecot() -> Iterator[Dovecot]:
    """A Dovecot as the README tells operators to run one behind the gateway: its per-IP
    auth penalty on, and the gateway's address (loopback) in login_trusted_networks, so the
    client address the gateway names with ID is the one penalised and logged. Tests keep
    apart by naming client addresses of their own."""
    yield from serving(
        Dovecot(make_data_dir("jg-dovecot-"), auth_penalty=True, trusted_networks="127.0.0.1")
    )


@pytest.fixture
def private_dovecot() -> Iterator[Dovecot]:
    """A Dovecot of the test's own, for tests that stop and start it."""
    yield from serving(Dovecot(make_data_dir("jg-dovecot-")))


@pytest.fixture(scope="session")
def sending_dovecot() -> Iterator[Dovecot]:
    """The Dovecot behind :func:`postfix`: LMTP delivery for example.com, SASL for Postfix,
    and the service account of SERVICE_USER as a master user."""
    yield from serving(
        Dovecot(
            make_data_dir("jg-dovecot-"),
            lmtp_port=free_port(),
            sasl_port=free_port(),
            master_users=dict([SERVICE_USER]),
        )
    )


@pytest.fixture(scope="session")
def master_dovecot() -> Iterator[Dovecot]:
    """A Dovecot with a master passdb: MASTER_USER may log in as any user, with SASL PLAIN
    naming the user as authorization identity or as "user*gwmaster" (MASTER_SEPARATOR)."""
    yield from serving(
        Dovecot(
            make_data_dir("jg-dovecot-"),
            master_users=dict([MASTER_USER]),
            master_separator=MASTER_SEPARATOR,
        )
    )


# The proxy server of proxy_cyrus: Cyrus lets it authenticate as any user (authzid).
CYRUS_PROXY = ("gwproxy", "gw-proxy-pw-2b9d")


@pytest.fixture(scope="session")
def proxy_cyrus() -> Iterator[Cyrus]:
    """A Cyrus whose CYRUS_PROXY account is in ``proxyservers``: SASL PLAIN with a user as
    authorization identity logs in as that user (GATEWAY_IMAP_MASTER_LOGIN=authzid)."""
    yield from serving(Cyrus(make_data_dir("jg-cyrus-"), proxy_servers=dict([CYRUS_PROXY])))


def master_settings(
    dovecot: Dovecot | Cyrus,
    redis_url: str,
    *,
    password: str | None = None,
    master: tuple[str, str] = MASTER_USER,
    **overrides: Any,
) -> Settings:
    """Settings of a gateway in front of ``dovecot`` (master_dovecot, or proxy_cyrus with
    ``master`` CYRUS_PROXY) that watches subscribed accounts as ``master`` (with ``password``
    instead of the right one, if given)."""
    user, right = master
    return gateway_settings(
        dovecot.url,
        redis_url,
        imap_master_user=user,
        imap_master_password=right if password is None else password,
        **overrides,
    )


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[Sink]:
    """The shared recording SMTP server (tests.smtp_servers: faults by address); also where
    :func:`postfix` sends mail for domains other than example.com."""
    yield from serving(Sink(make_data_dir("jg-sink-")))


@pytest.fixture(scope="session")
def postfix(sending_dovecot: Dovecot, smtp_sink: Sink) -> Iterator[Postfix]:
    """A real Postfix: submission with AUTH checked by sending_dovecot, example.com delivered
    into it over LMTP, other domains relayed to smtp_sink, real DSNs."""
    assert sending_dovecot.sasl_port is not None and sending_dovecot.lmtp_port is not None
    yield from serving(
        Postfix(
            make_data_dir("jg-postfix-"),
            sasl_port=sending_dovecot.sasl_port,
            lmtp_port=sending_dovecot.lmtp_port,
            outbound_port=smtp_sink.port,
        )
    )


@pytest.fixture(scope="session")
def strict_postfix(sending_dovecot: Dovecot, smtp_sink: Sink) -> Iterator[Postfix]:
    """A second Postfix in front of sending_dovecot with every opt-in: SIZE 100000, senders
    checked against the login (553 5.7.1 at the first RCPT), unknown example.com recipients
    refused at RCPT (550 5.1.1; the first RCPT of an address takes ~1 s)."""
    assert sending_dovecot.sasl_port is not None and sending_dovecot.lmtp_port is not None
    yield from serving(
        Postfix(
            make_data_dir("jg-postfix-"),
            sasl_port=sending_dovecot.sasl_port,
            lmtp_port=sending_dovecot.lmtp_port,
            outbound_port=smtp_sink.port,
            message_size_limit=STRICT_SIZE_LIMIT,
            sender_login_check=True,
            verify_rcpt=True,
        )
    )


def sending_settings(dovecot: Dovecot, smtp_url: str, redis_url: str, **overrides: Any) -> Settings:
    """Settings of a gateway that reads ``dovecot`` and sends through ``smtp_url``."""
    return gateway_settings(dovecot.url, redis_url, smtp_url=smtp_url, **overrides)


@pytest.fixture
async def sending_gateway(
    sending_dovecot: Dovecot, postfix: Postfix, redis_url: str
) -> AsyncIterator[str]:
    """A gateway in front of sending_dovecot that sends through postfix; yields its base URL.
    For other settings: ``running_gateway(sending_settings(...))``."""
    settings = sending_settings(sending_dovecot, postfix.url, redis_url)
    async with running_gateway(settings) as url:
        yield url


@pytest.fixture(scope="session")
def cyrus() -> Iterator[Cyrus]:
    """A Cyrus IMAP 3.6: OBJECTID, ACLs (LIST-MYRIGHTS), CREATE-SPECIAL-USE."""
    yield from serving(Cyrus(make_data_dir("jg-cyrus-")))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    yield from serving(RedisServer(make_data_dir("jg-redis-")))


@pytest.fixture
def sentinels() -> Iterator[SentinelSet]:
    """A Redis master, its replica and a Sentinel of their own (tests fail them over)."""
    servers = SentinelSet(make_data_dir("jg-sentinel-"))
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterSet]:
    """A real Redis Cluster of three masters on loopback (tests.rediscluster); tests keep
    apart by using accounts of their own."""
    cluster = RedisClusterSet()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own, for tests that stop and start it."""
    yield from serving(RedisServer(make_data_dir("jg-redis-")))


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared Redis, emptied for each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


def gateway_settings(imap_url: str, redis_url: str, **overrides: Any) -> Settings:
    port, metrics_port = free_ports(2)
    values: dict[str, Any] = {
        "imap_url": imap_url,
        "redis_url": redis_url,
        "host": "127.0.0.1",
        "port": port,
        "metrics_port": metrics_port,
        "public_url": f"http://127.0.0.1:{port}",
        # Tests change mail with a plain IMAP client and look at once.
        "sync_interval_seconds": 0,
        # Requests wait for their catch-up however loaded the machine (the wait's own
        # answers are tested with small waits in tests/sync/test_first_sync.py).
        "sync_wait_seconds": 600,
        **overrides,
    }
    return Settings(**values)


@asynccontextmanager
async def running_gateway(settings: Settings, app: FastAPI | None = None) -> AsyncIterator[str]:
    """Serve the gateway (or ``app``) as production does, on ``settings.port`` and its metrics
    port; yields its base URL."""
    server = gateway_server(settings, app or create_app(settings))
    task = asyncio.create_task(server.serve(sockets=listeners(settings)))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("gateway exited during start-up")
        await asyncio.sleep(0.01)
    try:
        yield settings.base_url
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def gateway(dovecot: Dovecot, redis_url: str) -> AsyncIterator[str]:
    """A gateway in front of the shared Dovecot and Redis; yields its base URL."""
    async with running_gateway(gateway_settings(dovecot.url, redis_url)) as url:
        yield url


@pytest.fixture
async def http(gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        yield client


@pytest.fixture
def alice(dovecot: Dovecot) -> httpx.BasicAuth:
    return httpx.BasicAuth("alice", dovecot.users["alice"])


@pytest.fixture
def bob(dovecot: Dovecot) -> httpx.BasicAuth:
    return httpx.BasicAuth("bob", dovecot.users["bob"])


async def fresh_jmap(server: Dovecot | Cyrus, http: httpx.AsyncClient) -> Jmap:
    """A JMAP client logged in as a new user of ``server``, with an empty mailbox."""
    user = server.fresh_user()
    return await Jmap(http, user, server.users[user]).start()


@pytest.fixture
async def jmap(dovecot: Dovecot, http: httpx.AsyncClient) -> Jmap:
    """A JMAP client of the Dovecot gateway, logged in as a fresh user."""
    return await fresh_jmap(dovecot, http)


@pytest.fixture
async def cyrus_gateway(cyrus: Cyrus, redis_url: str) -> AsyncIterator[str]:
    """A gateway in front of the shared Cyrus and Redis; yields its base URL."""
    async with running_gateway(gateway_settings(cyrus.url, redis_url)) as url:
        yield url


@pytest.fixture
async def cyrus_http(cyrus_gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cyrus_gateway, timeout=30) as client:
        yield client


@pytest.fixture
async def cyrus_jmap(cyrus: Cyrus, cyrus_http: httpx.AsyncClient) -> Jmap:
    """A JMAP client of the Cyrus gateway, logged in as a fresh user."""
    return await fresh_jmap(cyrus, cyrus_http)
