"""permessage-deflate (RFC 7692) that inflates no message past the gateway's size cap.

wsproto inflates each compressed frame whole, and uvicorn compares a message with its
``ws_max_size`` only once the inflated octets exist: a frame of a few hundred KB that inflates
to hundreds of MB would be built in memory first (measured: a 204 KB frame became 200 MB and
0.5 GB of peak memory). Here every frame is inflated only up to what is left of the message's
budget, and a message that would exceed it ends the connection with 1009 (RFC 6455 7.4.1,
"message too big") before more is produced. The compressed input is already bounded by
uvicorn's frame cap; this bounds what it turns into.
"""

from __future__ import annotations

import zlib
from typing import Any

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol


class BoundedDeflate(PerMessageDeflate):
    """wsproto's extension, inflating at most ``max_message`` octets per message."""

    def __init__(self, max_message: int, **parameters: Any) -> None:
        super().__init__(**parameters)
        self._max_message = max_message
        self._inflated = 0  # octets of the current message inflated so far

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        assert self._decompressor is not None
        room = self._max_message - self._inflated
        try:
            # One octet past the room tells "too big" apart from "exactly fits".
            inflated = self._decompressor.decompress(bytes(data), room + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(inflated)
        if self._inflated > self._max_message:
            return CloseReason.MESSAGE_TOO_BIG
        return inflated

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        tail = super().frame_inbound_complete(proto, fin)
        if isinstance(tail, bytes):
            self._inflated += len(tail)
            if self._inflated > self._max_message:
                return CloseReason.MESSAGE_TOO_BIG
        if fin:
            self._inflated = 0
        return tail
