"""SIGTERM on a real ``python -m gateway`` process: every WebSocket is closed with 1001 (going
away, RFC 6455 7.4.1) by the process itself, before it exits, push-enabled or not."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.gateways import running_gateways
from tests.jmapclient import CORE
from tests.jmapsocket import WAIT_SECONDS, basic, jmap_socket, receive, request
from tests.servers import Dovecot

ECHO = {"using": [CORE], "methodCalls": [["Core/echo", {}, "e"]]}


@pytest.mark.parametrize("drain_seconds", ["5", "0"])
async def test_sigterm_closes_every_socket_with_1001_before_exit(
    dovecot: Dovecot, redis_url: str, drain_seconds: str
) -> None:
    """With a drain the gateway closes the sockets itself; with none (0 s) uvicorn's shutdown
    does, through gateway.ws_protocol, with the same 1001."""
    auth = basic("alice", dovecot.users["alice"])
    async with running_gateways(
        1, imap_url=dovecot.url, redis_url=redis_url, push_drain_seconds=drain_seconds
    ) as (process,):
        async with (
            jmap_socket(process.base_url, auth) as pushing,
            jmap_socket(process.base_url, auth) as requesting,
        ):
            await pushing.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
            for socket in (pushing, requesting):
                assert (await request(socket, ECHO, "ready"))["@type"] == "Response"
            process.sigterm()
            for socket in (pushing, requesting):
                with pytest.raises(ConnectionClosed) as closed:
                    await receive(socket, timeout=WAIT_SECONDS * 3)
                # The close frame came from the process (an exit without one reads as 1006).
                assert closed.value.rcvd is not None, closed.value
                assert closed.value.rcvd.code == 1001
        assert await process.exits_gracefully()
        log = process.log_text()
        # With a drain every socket went within it; without, uvicorn's shutdown closed them.
        assert ("push drain" in log) == (drain_seconds == "0")
        assert "Traceback" not in log


async def test_a_handshake_after_sigterm_is_refused(dovecot: Dovecot, redis_url: str) -> None:
    """The listener closes first: a client arriving during the drain is refused at once (or,
    if it got in, answered 503), never left hanging."""
    auth = basic("alice", dovecot.users["alice"])
    async with running_gateways(1, imap_url=dovecot.url, redis_url=redis_url) as (process,):
        async with jmap_socket(process.base_url, auth) as held:
            process.sigterm()
            with pytest.raises(ConnectionClosed):
                await receive(held, timeout=WAIT_SECONDS * 3)
            try:
                async with jmap_socket(process.base_url, auth):
                    pytest.fail("a socket was accepted during the shutdown")
            except InvalidStatus as refused:
                assert refused.response.status_code == 503
            except OSError:
                pass  # connection refused: the listener is closed
        assert await process.exits_gracefully()
