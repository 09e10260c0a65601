"""The HTTP edge against a real gateway: heads and bodies that never end are cut, slow bodies
hold no concurrency slot, a huge head is refused, and an answer sent before the body was read
reaches clients that write their whole body first (Python's urllib), within a bounded drain.

Raw sockets play the slow clients; the gateway runs with one-second timeouts. The tests wait
for the gateway to close (generous socket timeouts) and never assert how long it took.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gateway.config import Settings
from gateway.http_protocol import MAX_HEAD_OCTETS
from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import CORE, Jmap
from tests.servers import LOOPBACK, Dovecot
from tests.test_metrics import scrape, value

CUTS = "jmap_gateway_http_connections_cut_total"
REQUESTS = "jmap_gateway_http_requests_total"
ECHO = json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {}, "c"]]}).encode()
# Longer than any wait for the gateway; it closes after about a second.
PATIENCE = 30


@dataclass
class Gateway:
    settings: Settings
    http: httpx.AsyncClient
    jmap: Jmap
    password: str

    @property
    def url(self) -> str:
        return self.settings.base_url

    def authorization(self) -> str:
        token = f"{self.jmap.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(token).decode()

    async def counted(self, name: str, **labels: str) -> float:
        return value(await scrape(self.settings.metrics_port), name, **labels)


@asynccontextmanager
async def edge_gateway(
    dovecot: Dovecot, redis_url: str, **overrides: Any
) -> AsyncIterator[Gateway]:
    settings = gateway_settings(
        dovecot.url,
        redis_url,
        http_head_timeout_seconds=1,
        http_body_timeout_seconds=1,
        **overrides,
    )
    async with (
        running_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=PATIENCE) as http,
    ):
        user = dovecot.fresh_user()
        jmap = await Jmap(http, user, dovecot.users[user]).start()
        yield Gateway(settings, http, jmap, dovecot.users[user])


@pytest.fixture
async def gateway(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Gateway]:
    async with edge_gateway(dovecot, redis_url) as running:
        yield running


@pytest.fixture
async def small_limits(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Gateway]:
    """maxSizeRequest and maxSizeUpload of 10,000 octets: a refused body is drained up to
    20,000 octets."""
    async with edge_gateway(
        dovecot, redis_url, max_size_request=10_000, max_size_upload=10_000
    ) as running:
        yield running


class Raw:
    """A client on a bare socket, sending exactly what it is given (in a thread)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((LOOPBACK, port))
        self.sock.settimeout(PATIENCE)

    async def send(self, data: bytes) -> None:
        await asyncio.to_thread(self.sock.sendall, data)

    async def until_closed(self) -> bytes:
        """Everything the gateway sends until it closes the connection."""

        def read() -> bytes:
            received = b""
            while chunk := self.sock.recv(65536):
                received += chunk
            return received

        try:
            return await asyncio.to_thread(read)
        finally:
            self.sock.close()


def status_and_problem(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/problem+json" in head.lower()
    assert b"connection: close" in head.lower()
    return status, json.loads(body)


def api_head(gateway: Gateway, length: int, extra: str = "") -> bytes:
    return (
        f"POST /jmap/api/ HTTP/1.1\r\nHost: {LOOPBACK}\r\n"
        f"Authorization: {gateway.authorization()}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


async def test_a_head_that_never_ends_gets_408_and_is_closed(gateway: Gateway) -> None:
    raw = Raw(gateway.settings.port)
    await raw.send(b"POST /jmap/api/ HTTP/1.1\r\nHost: x\r\nAuthoriz")
    status, problem = status_and_problem(await raw.until_closed())
    assert status == 408 and problem["status"] == 408
    assert await gateway.counted(CUTS, reason="head_timeout") == 1


async def test_a_silent_connection_is_closed_without_an_answer(gateway: Gateway) -> None:
    raw = Raw(gateway.settings.port)
    assert await raw.until_closed() == b""
    assert await gateway.counted(CUTS, reason="head_timeout") == 1


async def test_a_keep_alive_connection_gets_a_new_head_deadline(gateway: Gateway) -> None:
    raw = Raw(gateway.settings.port)
    await raw.send(f"GET /healthz HTTP/1.1\r\nHost: {LOOPBACK}\r\n\r\nGET /heal".encode())
    response = await raw.until_closed()
    first, _, second = response.partition(b'{"status":"ok"}')
    assert first.startswith(b"HTTP/1.1 200 ")
    assert status_and_problem(second)[0] == 408


async def test_a_body_that_never_ends_gets_408_and_is_closed(gateway: Gateway) -> None:
    raw = Raw(gateway.settings.port)
    await raw.send(api_head(gateway, 1000) + b'{"using": ')
    status, _ = status_and_problem(await raw.until_closed())
    assert status == 408
    assert await gateway.counted(CUTS, reason="body_timeout") == 1
    # The request the application saw is logged and counted as timed out, not as an error.
    async with asyncio.timeout(PATIENCE):
        while await gateway.counted(REQUESTS, route="/jmap/api/", status="408") < 1:
            await asyncio.sleep(0.02)
    assert await gateway.counted(REQUESTS, status="500") == 0


async def test_slow_bodies_hold_no_concurrency_slot(gateway: Gateway) -> None:
    slots = gateway.settings.max_concurrent_requests
    slow = [Raw(gateway.settings.port) for _ in range(slots)]
    for raw in slow:
        await raw.send(api_head(gateway, len(ECHO)) + ECHO[:10])
    async with asyncio.timeout(PATIENCE):
        while await gateway.counted("jmap_gateway_http_requests_in_flight") < slots:
            await asyncio.sleep(0.02)
    # Every slow request is past authentication and reading its body: none holds a slot.
    ninth = await gateway.http.post(
        "/jmap/api/",
        content=ECHO,
        headers={"authorization": gateway.authorization(), "content-type": "application/json"},
    )
    assert ninth.status_code == 200
    for raw in slow:
        assert status_and_problem(await raw.until_closed())[0] == 408
    assert await gateway.counted(CUTS, reason="body_timeout") == slots


async def test_a_slow_upload_gives_its_slot_back_when_cut(dovecot: Dovecot, redis_url: str) -> None:
    async with edge_gateway(dovecot, redis_url, max_concurrent_upload=1) as gateway:
        raw = Raw(gateway.settings.port)
        await raw.send(
            f"POST /jmap/upload/{gateway.jmap.account_id}/ HTTP/1.1\r\nHost: {LOOPBACK}\r\n"
            f"Authorization: {gateway.authorization()}\r\nContent-Length: 1000\r\n\r\n"
            "some".encode()
        )
        assert status_and_problem(await raw.until_closed())[0] == 408
        assert await gateway.jmap.upload(b"the next upload") != ""


async def test_a_head_too_large_gets_431(gateway: Gateway) -> None:
    raw = Raw(gateway.settings.port)
    await raw.send(b"GET /healthz HTTP/1.1\r\nX-Filler: " + b"a" * (MAX_HEAD_OCTETS + 1))
    status, _ = status_and_problem(await raw.until_closed())
    assert status == 431
    assert await gateway.counted(CUTS, reason="head_too_large") == 1


async def test_a_large_head_within_the_bound_is_served(gateway: Gateway) -> None:
    filler = "a" * (MAX_HEAD_OCTETS - 1024)
    response = await gateway.http.get("/healthz", headers={"x-filler": filler})
    assert response.status_code == 200


def urllib_post(url: str, data: bytes | Iterator[bytes], headers: dict[str, str]) -> Any:
    """POST with urllib, which writes the whole body before it reads anything."""
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=PATIENCE) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def chunks(size: int) -> Iterator[bytes]:
    for _ in range(size // 65536):
        yield b" " * 65536


# Far more than the socket buffers of a loopback connection hold: the old gateway's answer was
# lost to the reset of the connection it closed with this much unread.
BIG = 15_000_000


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_request_over_max_size_request_reaches_urllib(
    dovecot: Dovecot, redis_url: str, chunked: bool
) -> None:
    async with edge_gateway(dovecot, redis_url, max_size_request=10_000) as gateway:
        headers = {"Authorization": gateway.authorization(), "Content-Type": "application/json"}
        if chunked:  # read up to the limit, then refused
            headers["Transfer-Encoding"] = "chunked"
            data: bytes | Iterator[bytes] = chunks(BIG)
        else:  # refused on its Content-Length alone
            data = b" " * BIG
        status, problem = await asyncio.to_thread(
            urllib_post, gateway.url + "/jmap/api/", data, headers
        )
        assert status == 400
        assert problem["limit"] == "maxSizeRequest"
        assert await gateway.counted(CUTS) == 0


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_upload_over_max_size_upload_reaches_urllib(
    dovecot: Dovecot, redis_url: str, chunked: bool
) -> None:
    async with edge_gateway(dovecot, redis_url, max_size_upload=10_000) as gateway:
        headers = {"Authorization": gateway.authorization()}
        data: bytes | Iterator[bytes] = b"x" * BIG
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
            data = chunks(BIG)
        url = f"{gateway.url}/jmap/upload/{gateway.jmap.account_id}/"
        status, problem = await asyncio.to_thread(urllib_post, url, data, headers)
        assert status == 413
        assert problem["limit"] == "maxSizeUpload"


async def test_a_refused_body_is_drained_only_so_far(small_limits: Gateway) -> None:
    total = 200_000_000
    sock = socket.create_connection((LOOPBACK, small_limits.settings.port))
    sock.settimeout(PATIENCE)

    def flood() -> int:
        """Write until the gateway stops reading; how many octets it took."""
        sent = 0
        sock.sendall(api_head(small_limits, total))
        try:
            while sent < total:
                sent += sock.send(b" " * 65536)
        except OSError:
            pass
        return sent

    sent = await asyncio.to_thread(flood)
    sock.close()
    # The gateway read its 20,000 octets (and the kernel buffered some more), not 200 MB.
    assert sent < total
    assert await small_limits.counted(CUTS, reason="drain_limit") == 1


async def test_a_drained_keep_alive_connection_serves_the_next_request(
    small_limits: Gateway,
) -> None:
    raw = Raw(small_limits.settings.port)
    refused = api_head(small_limits, 15_000) + b" " * 15_000
    echo = api_head(small_limits, len(ECHO), "Connection: close\r\n") + ECHO
    await raw.send(refused + echo)
    response = await raw.until_closed()
    assert response.startswith(b"HTTP/1.1 400 ")
    assert b'"methodResponses":[["Core/echo",{},"c"]]' in response
