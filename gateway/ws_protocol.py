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

uvicorn builds each connection with the class :func:`ws_protocol_class` returns (``ws=`` of
its Config); the subclass changes only the accept and the shutdown, using the attributes
uvicorn's own code uses.
"""

from __future__ import annotations

from typing import Any

import wsproto
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
from wsproto.connection import ConnectionState
from wsproto.extensions import Extension

from gateway.ws_deflate import BoundedDeflate

# RFC 6455 7.4.1: the server is going down.
GOING_AWAY = 1001
SHUTDOWN_REASON = "server shutting down"


def ws_protocol_class() -> type[WSProtocol]:
    """The protocol class uvicorn builds each WebSocket connection with."""
    return GatewayWebSocket


class GatewayWebSocket(WSProtocol):
    """See the module docstring."""

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
