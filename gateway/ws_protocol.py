"""WebSocket connections (RFC 6455) as the gateway serves them: uvicorn's wsproto protocol with
permessage-deflate that keeps no compression state between messages, and a shutdown that says
"going away".

* **Compression without context takeover** (RFC 7692 7.1.1): uvicorn offers permessage-deflate
  with wsproto's defaults, so every connection that exchanged a message keeps a compressor and a
  decompressor with their windows for the rest of its life: about 114 KB measured per
  connection, against 17.6 KB with ``server_no_context_takeover`` and
  ``client_no_context_takeover``, with which wsproto drops both after each message. JMAP
  messages are compressed whole one by one; the context across messages saves little, and a
  push connection sits idle nearly all the time. ``client_no_context_takeover`` may be in the
  answer whether or not the client offered it (RFC 7692 7.1.1.2); a client offering no
  compression gets none.
* **1001 on shutdown**: uvicorn closes its WebSockets with 1012 (service restart) when the
  server stops; RFC 6455 7.4.1's 1001 ("going away", a server going down) is what the gateway
  sends, and what its clients are told to reconnect on. The application's own drain
  (:mod:`gateway.ws`) normally closed every socket before this runs.
* **Small while idle** (goal: an idle push connection under 20 KB): uvicorn gives every
  connection an ``asyncio.Queue`` of incoming events and an ``asyncio.Event`` for flow control,
  four ``collections.deque`` of ~760 bytes each that are empty nearly all the time, and wsproto
  keeps its HTTP/1.1 handshake (h11's connection, the request and its headers) for the
  connection's life. The subclass swaps in an inbox and a flag holding nothing while idle (the
  operations uvicorn calls, nothing more) and lets go of the handshake once the WebSocket is
  established.

uvicorn builds each connection with the class :func:`ws_protocol_class` returns (``ws=`` of
its Config); the subclass changes only the accept, the shutdown, the close of a refused frame
and those three members, using the attributes uvicorn's own code uses
(tests/test_websocket*.py run through all of them).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Generator
from typing import Any, Generic, TypeVar

import wsproto
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import Event
from wsproto.extensions import Extension
from wsproto.handshake import H11Handshake

from gateway.ws_deflate import BoundedDeflate

# RFC 6455 7.4.1: the server is going down.
GOING_AWAY = 1001
SHUTDOWN_REASON = "server shutting down"


def ws_protocol_class() -> type[WSProtocol]:
    """The protocol class uvicorn builds each WebSocket connection with."""
    return GatewayWebSocket


T = TypeVar("T")

# What a connection's handshake becomes once the WebSocket is established: one shared, empty
# handshake (no events, never fed again: wsproto hands data to the connection from then on).
SPENT_HANDSHAKE = H11Handshake(ConnectionType.SERVER)


class GatewayWebSocket(WSProtocol):
    """See the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag(is_set=True)  # type: ignore[assignment]
        self.conn = SlimConnection(ConnectionType.SERVER)

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] != "websocket.accept" or self.handshake_complete:
            await super().send(message)
            return
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected
        extensions: list[Extension] = []
        if self.config.ws_per_message_deflate:
            extensions.append(
                BoundedDeflate(
                    self.config.ws_max_size,
                    client_no_context_takeover=True,
                    server_no_context_takeover=True,
                )
            )
        if self.transport.is_closing():
            return
        self.handshake_complete = True
        accepted: dict[str, Any] = message  # type: ignore[assignment]
        self.transport.write(
            self.conn.send(
                wsproto.events.AcceptConnection(
                    subprotocol=accepted.get("subprotocol"),
                    extensions=extensions,
                    extra_headers=self.default_headers + list(accepted.get("headers", [])),
                )
            )
        )
        self.start_keepalive()
        # Events the handshake still held are handled as data_received would; with them taken
        # the connection lets go of its handshake.
        self.handle_events()

    def handle_close(self, event: wsproto.events.CloseConnection) -> None:
        # wsproto reports a frame it refused (a message inflating past the cap: 1009; text
        # that is not UTF-8: 1007) as a CloseConnection while the connection is still OPEN,
        # and uvicorn would then drop the TCP connection without a word: RFC 6455 7.1.7 fails
        # the connection with a close frame saying why, where one can still be sent.
        if self.close_sent or self.conn.state is not ConnectionState.OPEN:
            super().handle_close(event)
            return
        self.close_sent = True
        refusal = wsproto.events.CloseConnection(code=event.code, reason=event.reason)
        self.transport.write(self.conn.send(refusal))
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": event.code, "reason": event.reason}
        )
        self.transport.close()

    def shutdown(self) -> None:
        if not self.handshake_complete or self.response_started or self.close_sent:
            super().shutdown()
            return
        self.stop_keepalive()
        self.close_sent = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": GOING_AWAY})
        closing = wsproto.events.CloseConnection(code=GOING_AWAY, reason=SHUTDOWN_REASON)
        self.transport.write(self.conn.send(closing))
        self.transport.close()


class SlimConnection(wsproto.WSConnection):
    """wsproto's server connection, letting go of its HTTP/1.1 handshake (h11's connection,
    the request, its headers) once every event of it was taken and the WebSocket is
    established: from then on wsproto reads and writes only the connection."""

    def events(self) -> Generator[Event, None, None]:
        yield from self.handshake.events()
        if self.connection is not None:
            self.handshake = SPENT_HANDSHAKE
            yield from self.connection.events()


class Inbox(Generic[T]):
    """The part of ``asyncio.Queue`` uvicorn uses for a connection's incoming events
    (``put_nowait``, ``get``, ``empty``), unbounded as uvicorn's queue is, holding nothing
    while empty: no deque and no future until something waits."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[T] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> T:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item


class Flag:
    """The part of ``asyncio.Event`` uvicorn uses for a connection's flow control (``set``,
    ``clear``, ``wait``), holding no deque of waiters while none waits."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, *, is_set: bool) -> None:
        self._value = is_set
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        self._value = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> None:
        if self._value:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
