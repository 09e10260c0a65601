"""A JMAP-over-WebSocket client for the tests (RFC 8887), on the ``websockets`` library: a
different implementation from the gateway's wsproto, as an interoperability test wants."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

WS_PATH = "/jmap/ws"
# Generous: the machine is shared; nothing here measures time.
WAIT_SECONDS = 10.0


def ws_url(base_url: str, query: str = "") -> str:
    """The socket's URL under a gateway's http:// base URL."""
    url = "ws" + base_url.removeprefix("http") + WS_PATH
    return f"{url}?{query}" if query else url


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@asynccontextmanager
async def jmap_socket(
    base_url: str,
    headers: dict[str, str] | None = None,
    *,
    query: str = "",
    compression: str | None = "deflate",
    subprotocols: Sequence[str] = ("jmap",),
) -> AsyncIterator[ClientConnection]:
    """An open socket; the handshake's refusal raises websockets' InvalidStatus."""
    async with connect(
        ws_url(base_url, query),
        additional_headers=headers or {},
        subprotocols=[Subprotocol(name) for name in subprotocols],
        compression=compression,
        proxy=None,
        max_size=None,
        ping_interval=None,
        open_timeout=WAIT_SECONDS,
    ) as socket:
        yield socket


async def receive(socket: ClientConnection, timeout: float = WAIT_SECONDS) -> dict[str, Any]:
    """The next message, as JSON."""
    message = await asyncio.wait_for(socket.recv(), timeout)
    assert isinstance(message, str), "the gateway sends text frames only"
    return json.loads(message)  # type: ignore[no-any-return]


async def receive_where(
    socket: ClientConnection,
    wanted: Callable[[dict[str, Any]], bool],
    timeout: float = WAIT_SECONDS,
) -> dict[str, Any]:
    """The first message ``wanted`` accepts; the others are skipped."""
    async with asyncio.timeout(timeout):
        while True:
            message = await receive(socket, timeout)
            if wanted(message):
                return message


async def request(
    socket: ClientConnection, body: dict[str, Any], request_id: str | None = None
) -> dict[str, Any]:
    """Send a Request and return its Response or RequestError (matched by id when given;
    StateChange messages meanwhile are skipped)."""
    message = {"@type": "Request", **body}
    if request_id is not None:
        message["id"] = request_id
    await socket.send(json.dumps(message))
    return await receive_where(
        socket,
        lambda m: m["@type"] in ("Response", "RequestError") and m.get("requestId") == request_id,
    )
