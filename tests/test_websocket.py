"""JMAP over WebSocket (RFC 8887) against a real gateway, Dovecot and Redis: the handshake,
requests and their errors, limits, compression, closing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import CORE, MAIL, Jmap
from tests.jmapsocket import basic, jmap_socket, receive, request
from tests.servers import Dovecot
from tests.test_metrics import scrape, value

ECHO = {"using": [CORE], "methodCalls": [["Core/echo", {"hello": True}, "e1"]]}


@pytest.fixture
def auth(dovecot: Dovecot, jmap: Jmap) -> dict[str, str]:
    return basic(jmap.username, dovecot.users[jmap.username])


def refusal(raised: pytest.ExceptionInfo[InvalidStatus]) -> tuple[int, dict[str, Any]]:
    response = raised.value.response
    assert response.headers["content-type"] == "application/problem+json"
    return response.status_code, json.loads(response.body or b"{}")


async def test_a_request_gets_its_response_with_the_request_id(
    gateway: str, auth: dict[str, str]
) -> None:
    async with jmap_socket(gateway, auth) as socket:
        assert socket.subprotocol == "jmap"
        answer = await request(socket, ECHO, "R1")
        assert answer["@type"] == "Response"
        assert answer["requestId"] == "R1"
        assert answer["methodResponses"] == [["Core/echo", {"hello": True}, "e1"]]
        # RFC 8887 4.3.3: without an id, no requestId.
        plain = await request(socket, ECHO)
        assert "requestId" not in plain
        assert plain["methodResponses"] == answer["methodResponses"]


async def test_session_advertises_the_socket(gateway: str, jmap: Jmap) -> None:
    session = (await jmap.http.get("/jmap/session", auth=jmap.auth)).json()
    assert session["capabilities"]["urn:ietf:params:jmap:websocket"] == {
        "url": "ws" + gateway.removeprefix("http") + "/jmap/ws",
        "supportsPush": True,
    }


async def test_a_handshake_without_the_jmap_subprotocol_is_refused(
    gateway: str, auth: dict[str, str]
) -> None:
    with pytest.raises(InvalidStatus) as raised:
        async with jmap_socket(gateway, auth, subprotocols=("chat",)):
            pass
    status, document = refusal(raised)
    assert status == 400
    assert "jmap" in document["detail"]
    with pytest.raises(InvalidStatus) as raised:
        async with jmap_socket(gateway, auth, subprotocols=()):
            pass
    assert refusal(raised)[0] == 400


async def test_a_handshake_without_credentials_gets_401_with_a_challenge(gateway: str) -> None:
    with pytest.raises(InvalidStatus) as raised:
        async with jmap_socket(gateway):
            pass
    status, document = refusal(raised)
    assert status == 401
    assert document["status"] == 401
    assert raised.value.response.headers["www-authenticate"].startswith("Basic ")


async def test_wrong_credentials_get_401(gateway: str, jmap: Jmap) -> None:
    with pytest.raises(InvalidStatus) as raised:
        async with jmap_socket(gateway, basic(jmap.username, "not-the-password")):
            pass
    assert refusal(raised)[0] == 401


async def test_basic_from_a_foreign_origin_is_refused(
    dovecot: Dovecot, redis_url: str, jmap: Jmap
) -> None:
    settings = gateway_settings(dovecot.url, redis_url, push_allowed_origins="https://app.example")
    auth = basic(jmap.username, dovecot.users[jmap.username])
    async with running_gateway(settings) as url:
        with pytest.raises(InvalidStatus) as raised:
            async with jmap_socket(url, {**auth, "Origin": "https://evil.example"}):
                pass
        assert refusal(raised)[0] == 403
        # Listed, and the gateway's own origin, are served.
        for origin in ("https://app.example", url):
            async with jmap_socket(url, {**auth, "Origin": origin}) as socket:
                assert (await request(socket, ECHO, "o"))["@type"] == "Response"


async def test_text_that_is_not_json_gets_not_json(gateway: str, auth: dict[str, str]) -> None:
    async with jmap_socket(gateway, auth) as socket:
        await socket.send("The quick brown fox jumps over the lazy dog.")
        error = await receive(socket)
        assert error["@type"] == "RequestError"
        assert error["type"] == "urn:ietf:params:jmap:error:notJSON"
        assert error["status"] == 400
        assert "requestId" not in error
        # The socket stays usable.
        assert (await request(socket, ECHO, "after"))["@type"] == "Response"


@pytest.mark.parametrize(
    "message",
    [
        [1, 2, 3],
        "a string",
        {"using": [CORE], "methodCalls": []},  # no @type
        {"@type": "Frobnicate"},
        {"@type": "Request", "id": 7, "using": [CORE], "methodCalls": []},
        {"@type": "WebSocketPushEnable", "dataTypes": "Email"},
    ],
)
async def test_json_that_is_no_request_gets_not_request(
    gateway: str, auth: dict[str, str], message: Any
) -> None:
    async with jmap_socket(gateway, auth) as socket:
        await socket.send(json.dumps(message))
        error = await receive(socket)
        assert error["@type"] == "RequestError"
        assert error["type"] == "urn:ietf:params:jmap:error:notRequest"


async def test_a_request_error_carries_the_request_id(gateway: str, auth: dict[str, str]) -> None:
    async with jmap_socket(gateway, auth) as socket:
        unknown = {"using": [CORE, "urn:example:nothing"], "methodCalls": []}
        error = await request(socket, unknown, "bad")
        assert error["@type"] == "RequestError"
        assert error["requestId"] == "bad"
        assert error["type"] == "urn:ietf:params:jmap:error:unknownCapability"


async def test_a_binary_frame_closes_with_1003(
    dovecot: Dovecot, redis_url: str, jmap: Jmap
) -> None:
    settings = gateway_settings(dovecot.url, redis_url)
    auth = basic(jmap.username, dovecot.users[jmap.username])
    async with running_gateway(settings) as url, jmap_socket(url, auth) as socket:
        samples = await scrape(settings.metrics_port)
        assert value(samples, "jmap_gateway_websockets_open") == 1
        await socket.send(json.dumps(ECHO).encode())
        with pytest.raises(ConnectionClosed) as closed:
            await receive(socket)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1003
        samples = await scrape(settings.metrics_port)
        assert value(samples, "jmap_gateway_websocket_closes_total", reason="binary") == 1


async def test_a_message_over_max_size_request_gets_limit_and_the_socket_stays(
    dovecot: Dovecot, redis_url: str, jmap: Jmap
) -> None:
    settings = gateway_settings(dovecot.url, redis_url, max_size_request=2000)
    auth = basic(jmap.username, dovecot.users[jmap.username])
    async with running_gateway(settings) as url, jmap_socket(url, auth) as socket:
        big = {**ECHO, "methodCalls": [["Core/echo", {"pad": "x" * 3000}, "e1"]]}
        await socket.send(json.dumps({"@type": "Request", "id": "big", **big}))
        error = await receive(socket)
        assert error["@type"] == "RequestError"
        assert error["type"] == "urn:ietf:params:jmap:error:limit"
        assert error["limit"] == "maxSizeRequest"
        assert (await request(socket, ECHO, "small"))["@type"] == "Response"
        # Past maxSizeRequest + 64 KiB uvicorn closes with 1009 (message too big).
        await socket.send(json.dumps({"@type": "Request", "pad": "x" * (70 * 1024)}))
        with pytest.raises(ConnectionClosed) as closed:
            await receive(socket)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009


async def test_requests_over_max_concurrent_requests_get_the_429_form(
    dovecot: Dovecot, redis_url: str, jmap: Jmap
) -> None:
    settings = gateway_settings(dovecot.url, redis_url, max_concurrent_requests=1)
    auth = basic(jmap.username, dovecot.users[jmap.username])
    async with running_gateway(settings) as url, jmap_socket(url, auth) as socket:
        # Many requests at once on one socket: with one slot, some are refused, none lost.
        query = {"using": [CORE, MAIL], "methodCalls": [["Mailbox/get", {}, "m"]]}
        for i in range(8):
            body = {"@type": "Request", "id": f"q{i}", **query}
            body["methodCalls"] = [["Mailbox/get", {"accountId": jmap.account_id}, "m"]]
            await socket.send(json.dumps(body))
        answers = [await receive(socket) for _ in range(8)]
        assert sorted(a["requestId"] for a in answers) == [f"q{i}" for i in range(8)]
        refused = [a for a in answers if a["@type"] == "RequestError"]
        served = [a for a in answers if a["@type"] == "Response"]
        assert served, answers
        assert refused, "one slot cannot serve eight requests at once"
        for error in refused:
            assert error["status"] == 429
            assert error["type"] == "urn:ietf:params:jmap:error:limit"
            assert error["limit"] == "maxConcurrentRequests"


async def test_deflate_is_negotiated_without_context_takeover_when_offered(
    gateway: str, auth: dict[str, str]
) -> None:
    async with jmap_socket(gateway, auth) as socket:
        assert socket.response is not None
        extensions = socket.response.headers.get("sec-websocket-extensions", "")
        assert "permessage-deflate" in extensions
        assert "server_no_context_takeover" in extensions
        assert "client_no_context_takeover" in extensions
        for i in range(3):  # compressed messages both ways, each on its own
            assert (await request(socket, ECHO, f"d{i}"))["@type"] == "Response"
    async with jmap_socket(gateway, auth, compression=None) as socket:
        assert socket.response is not None
        assert "sec-websocket-extensions" not in socket.response.headers
        assert (await request(socket, ECHO, "plain"))["@type"] == "Response"


async def test_the_metrics_port_refuses_a_handshake(
    dovecot: Dovecot, redis_url: str, jmap: Jmap
) -> None:
    settings = gateway_settings(dovecot.url, redis_url)
    auth = basic(jmap.username, dovecot.users[jmap.username])
    async with running_gateway(settings):
        metrics = f"http://127.0.0.1:{settings.metrics_port}"
        with pytest.raises(InvalidStatus) as raised:
            async with jmap_socket(metrics, auth):
                pass
        assert raised.value.response.status_code == 403
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{metrics}/metrics")).status_code == 200


async def test_every_socket_counts_against_the_limits_push_or_not(
    dovecot: Dovecot, redis_url: str, jmap: Jmap
) -> None:
    """Sockets that only make requests are bounded too: per account and replica by
    GATEWAY_PUSH_MAX_PER_ACCOUNT, a closed one giving its place back."""
    settings = gateway_settings(dovecot.url, redis_url, push_max_per_account=2)
    auth = basic(jmap.username, dovecot.users[jmap.username])
    async with running_gateway(settings) as url:
        async with jmap_socket(url, auth) as first, jmap_socket(url, auth) as second:
            for socket in (first, second):
                assert (await request(socket, ECHO, "e"))["@type"] == "Response"
            with pytest.raises(InvalidStatus) as refused:
                async with jmap_socket(url, auth):
                    pass
            status, body = refusal(refused)
            assert status == 429
            assert body["limit"] == "maxPushConnections"
        async with jmap_socket(url, auth) as again:
            assert (await request(again, ECHO, "e"))["@type"] == "Response"
