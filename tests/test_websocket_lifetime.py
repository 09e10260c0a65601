"""How long a JMAP WebSocket lives (contracts Q5): one opened with a push token closes with 1008
("token expired") when the token's stream lifetime ends; one opened with the Authorization
header closes with 1008 ("authentication failed") once the upstream refuses its credentials
on a periodic recheck."""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed

from gateway.app import create_app
from gateway.push.tokens import mint, token_key
from gateway.services import Services
from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import CORE
from tests.jmapsocket import basic, jmap_socket, receive, request
from tests.servers import Dovecot

ECHO = {"using": [CORE], "methodCalls": [["Core/echo", {}, "e"]]}
# Seconds of validity left in the short-lived token (enough to connect on a loaded machine).
TOKEN_LEFT = 8


async def test_a_token_socket_closes_with_1008_when_its_stream_lifetime_ends(
    dovecot: Dovecot, redis_url: str
) -> None:
    settings = gateway_settings(dovecot.url, redis_url)
    app = create_app(settings)
    async with running_gateway(settings, app) as url:
        svc: Services = app.state.services
        principal = await svc.authenticator.authenticate(
            basic("alice", dovecot.users["alice"])["Authorization"], None
        )
        key = token_key(await svc.authenticator.server_secret())
        # Minted as if long ago: it ends (and its stream with it) TOKEN_LEFT seconds from now.
        token, says = mint(
            key, principal, ttl=10, stream_seconds=0, now=time.time() - (10 - TOKEN_LEFT)
        )
        async with jmap_socket(url, query=f"access_token={token}") as socket:
            await socket.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await receive(socket, timeout=TOKEN_LEFT * 4)
            assert time.time() >= says.stream_until - 1  # not before its time
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "token expired")


async def test_a_socket_whose_password_changed_closes_with_1008(
    private_dovecot: Dovecot, redis_url: str
) -> None:
    settings = gateway_settings(
        private_dovecot.url, redis_url, push_recheck_seconds=10, auth_cache_seconds=0
    )
    auth = basic("alice", private_dovecot.users["alice"])
    async with running_gateway(settings) as url, jmap_socket(url, auth) as socket:
        assert (await request(socket, ECHO, "before"))["@type"] == "Response"
        # The user's password changes upstream (Dovecot re-reads its passwd-file).
        private_dovecot.users["alice"] = "a-new-password"
        passwd = "".join(
            f"{user}:{{PLAIN}}{pw}::::::\n" for user, pw in private_dovecot.users.items()
        )
        (private_dovecot.root / "passwd").write_text(passwd)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await receive(socket, timeout=60)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "authentication failed")
