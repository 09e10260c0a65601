"""A compressed WebSocket message is inflated only up to the size cap (gateway/ws_deflate.py).

A few KB of deflate can stand for hundreds of MB of text; the gateway must close such a message
with 1009 without building it. The gateway runs in this process, so tracemalloc sees what it
allocates; the client's own message is made before tracing starts and sent as octets.
"""

from __future__ import annotations

import json
import tracemalloc

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import CORE, Jmap
from tests.jmapsocket import basic, jmap_socket, receive, request
from tests.servers import Dovecot

ECHO = {"using": [CORE], "methodCalls": [["Core/echo", {"hello": True}, "e1"]]}
# Inflates to 40 MB; compressed by the client it is about 40 KB, under the frame cap.
BOMB_OCTETS = 40_000_000


async def test_a_message_inflating_past_the_cap_closes_1009_without_being_built(
    dovecot: Dovecot, redis_url: str, jmap: Jmap
) -> None:
    settings = gateway_settings(dovecot.url, redis_url, max_size_request=2000)
    auth = basic(jmap.username, dovecot.users[jmap.username])
    bomb = b'{"@type":"Request","pad":"' + b"x" * BOMB_OCTETS + b'"}'
    async with running_gateway(settings) as url, jmap_socket(url, auth) as socket:
        assert (await request(socket, ECHO, "before"))["@type"] == "Response"
        tracemalloc.start()
        try:
            await socket.send(bomb, text=True)
            with pytest.raises(ConnectionClosed) as closed:
                await receive(socket)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
        # Far below the 40 MB the message stands for (the client's compressor included).
        assert peak < BOMB_OCTETS // 8, peak


async def test_compressed_messages_up_to_the_cap_still_pass(
    dovecot: Dovecot, redis_url: str, jmap: Jmap
) -> None:
    """Messages near the budget, one after another on one socket: the count starts again with
    each message, and a message over maxSizeRequest but under the frame cap still gets the
    RequestError rather than a close."""
    settings = gateway_settings(dovecot.url, redis_url, max_size_request=2000)
    auth = basic(jmap.username, dovecot.users[jmap.username])
    async with running_gateway(settings) as url, jmap_socket(url, auth) as socket:
        for i in range(3):
            padded = {**ECHO, "methodCalls": [["Core/echo", {"pad": "y" * 1500}, "e1"]]}
            assert (await request(socket, padded, f"fits{i}"))["@type"] == "Response"
        big = {**ECHO, "methodCalls": [["Core/echo", {"pad": "z" * 60_000}, "e1"]]}
        await socket.send(json.dumps({"@type": "Request", "id": "big", **big}))
        error = await receive(socket)
        assert error["type"] == "urn:ietf:params:jmap:error:limit"
        assert (await request(socket, ECHO, "after"))["@type"] == "Response"
