"""API requests end to end (RFC 8620 3): errors, references, createdIds and limits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext, Method
from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
PREFIX = "urn:ietf:params:jmap:error:"


def request(
    *calls: list[object], using: list[str] | None = None, **extra: object
) -> dict[str, object]:
    return {"using": using or [CORE], "methodCalls": list(calls), **extra}


async def post(
    http: httpx.AsyncClient,
    auth: httpx.BasicAuth,
    body: object,
    content_type: str = "application/json",
) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http.post(
        "/jmap/api/", content=data, auth=auth, headers={"content-type": content_type}
    )


async def account_id(http: httpx.AsyncClient, auth: httpx.BasicAuth) -> str:
    session = (await http.get("/jmap/session", auth=auth)).json()
    return str(session["primaryAccounts"][MAIL])


def assert_problem(response: httpx.Response, status: int, type_: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == PREFIX + type_
    assert problem["status"] == status
    return problem  # type: ignore[no-any-return]


async def test_echo_and_session_state(http: httpx.AsyncClient, alice: httpx.BasicAuth) -> None:
    response = await post(http, alice, request(["Core/echo", {"hello": [1, "two"]}, "c1"]))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["methodResponses"] == [["Core/echo", {"hello": [1, "two"]}, "c1"]]
    session = (await http.get("/jmap/session", auth=alice)).json()
    assert body["sessionState"] == session["state"]
    assert "createdIds" not in body


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"],
)
async def test_content_type_with_or_without_charset(
    http: httpx.AsyncClient, alice: httpx.BasicAuth, content_type: str
) -> None:
    response = await post(http, alice, request(["Core/echo", {}, "c"]), content_type)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "content_type", "type_"),
    [
        (b"{not json", "application/json", "notJSON"),
        (b'{"using": []}', "text/plain", "notJSON"),
        (b"\xff\xfe{}", "application/json", "notJSON"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", "notJSON"),
        (b'{"using": "x", "methodCalls": []}', "application/json", "notRequest"),
        (
            b'{"using": [], "methodCalls": [["Core/echo", [], "c"]]}',
            "application/json",
            "notRequest",
        ),
        (b'{"using": [], "methodCalls": [["Core/echo", {}]]}', "application/json", "notRequest"),
        (b'{"methodCalls": []}', "application/json", "notRequest"),
        (b"[]", "application/json", "notRequest"),
        (
            b'{"using": ["urn:example:nope"], "methodCalls": []}',
            "application/json",
            "unknownCapability",
        ),
    ],
)
async def test_request_level_errors(
    http: httpx.AsyncClient, alice: httpx.BasicAuth, body: bytes, content_type: str, type_: str
) -> None:
    response = await post(http, alice, body, content_type)
    problem = assert_problem(response, 400, type_)
    assert "Traceback" not in response.text
    assert problem["detail"]


async def test_unknown_method_leaves_the_rest_running(
    http: httpx.AsyncClient, alice: httpx.BasicAuth
) -> None:
    body = request(["Core/echo", {"a": 1}, "c1"], ["Nope/get", {}, "c2"], ["Core/echo", {}, "c3"])
    responses = (await post(http, alice, body)).json()["methodResponses"]
    assert responses[0] == ["Core/echo", {"a": 1}, "c1"]
    assert responses[1][0] == "error" and responses[1][1]["type"] == "unknownMethod"
    assert responses[1][2] == "c2"
    assert responses[2] == ["Core/echo", {}, "c3"]


async def test_result_references_with_star_paths(
    http: httpx.AsyncClient, alice: httpx.BasicAuth
) -> None:
    body = request(
        ["Core/echo", {"list": [{"ids": ["a", "b"]}, {"ids": ["c"]}], "one": {"x~y": 5}}, "t0"],
        [
            "Core/echo",
            {
                "#ids": {"resultOf": "t0", "name": "Core/echo", "path": "/list/*/ids"},
                "#x": {"resultOf": "t0", "name": "Core/echo", "path": "/one/x~0y"},
            },
            "t1",
        ],
    )
    responses = (await post(http, alice, body)).json()["methodResponses"]
    assert responses[1] == ["Core/echo", {"ids": ["a", "b", "c"], "x": 5}, "t1"]


@pytest.mark.parametrize(
    "reference",
    [
        {"resultOf": "missing", "name": "Core/echo", "path": "/a"},
        {"resultOf": "t0", "name": "Other/name", "path": "/a"},
        {"resultOf": "t0", "name": "Core/echo", "path": "/nothing/here"},
        {"resultOf": "t0", "name": "Core/echo"},
    ],
)
async def test_failing_result_reference(
    http: httpx.AsyncClient, alice: httpx.BasicAuth, reference: dict[str, str]
) -> None:
    body = request(
        ["Core/echo", {"a": [1]}, "t0"],
        ["Core/echo", {"#a": reference}, "t1"],
        ["Core/echo", {"after": True}, "t2"],
    )
    responses = (await post(http, alice, body)).json()["methodResponses"]
    assert responses[1][0] == "error"
    assert responses[1][1]["type"] == "invalidResultReference"
    assert responses[2] == ["Core/echo", {"after": True}, "t2"]


async def test_created_ids_round_trip(http: httpx.AsyncClient, alice: httpx.BasicAuth) -> None:
    body = request(["Core/echo", {}, "c1"], createdIds={"k1": "Mabc", "k2": "Mdef"})
    response = (await post(http, alice, body)).json()
    assert response["createdIds"] == {"k1": "Mabc", "k2": "Mdef"}
    empty = (await post(http, alice, request(["Core/echo", {}, "c1"], createdIds={}))).json()
    assert empty["createdIds"] == {}


async def test_method_of_a_capability_not_in_using(
    http: httpx.AsyncClient, alice: httpx.BasicAuth
) -> None:
    body = {"using": [MAIL], "methodCalls": [["Core/echo", {}, "c1"]]}
    responses = (await post(http, alice, body)).json()["methodResponses"]
    assert responses[0][0] == "error" and responses[0][1]["type"] == "unknownMethod"


async def test_too_many_calls(http: httpx.AsyncClient, alice: httpx.BasicAuth) -> None:
    calls = [["Core/echo", {}, f"c{i}"] for i in range(33)]
    problem = assert_problem(await post(http, alice, request(*calls)), 400, "limit")
    assert problem["limit"] == "maxCallsInRequest"
    ok = await post(http, alice, request(*calls[:32]))
    assert len(ok.json()["methodResponses"]) == 32


async def test_body_over_max_size_request(http: httpx.AsyncClient, alice: httpx.BasicAuth) -> None:
    padding = "x" * 10_000_000
    problem = assert_problem(
        await post(http, alice, request(["Core/echo", {"p": padding}, "c"])), 400, "limit"
    )
    assert problem["limit"] == "maxSizeRequest"


async def test_body_over_max_size_request_without_length(
    http: httpx.AsyncClient, alice: httpx.BasicAuth
) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(11):
            yield b" " * 1_000_000

    response = await http.post(
        "/jmap/api/", content=chunks(), auth=alice, headers={"content-type": "application/json"}
    )
    assert assert_problem(response, 400, "limit")["limit"] == "maxSizeRequest"


async def test_hostile_argument_types_never_500(
    http: httpx.AsyncClient, alice: httpx.BasicAuth
) -> None:
    body = request(
        ["Core/echo", {"#x": "not a reference"}, "c1"],
        ["Core/echo", {"#x": {"resultOf": 1, "name": [], "path": None}}, "c2"],
        ["Core/echo", {"x": 1, "#x": {"resultOf": "c1", "name": "e", "path": "/"}}, "c3"],
    )
    response = await post(http, alice, body)
    assert response.status_code == 200
    types = [r[1]["type"] for r in response.json()["methodResponses"]]
    assert types == ["invalidResultReference", "invalidResultReference", "invalidArguments"]


async def test_concurrent_requests_over_the_limit(dovecot: Dovecot, redis_url: str) -> None:
    settings = gateway_settings(dovecot.url, redis_url, max_concurrent_requests=2)
    app = create_app(settings)
    auth = httpx.BasicAuth("alice", dovecot.users["alice"])
    gate = asyncio.Event()
    started = asyncio.Semaphore(0)

    async def wait(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
        started.release()
        await gate.wait()
        return {}

    async with running_gateway(settings, app) as url, httpx.AsyncClient(base_url=url) as http:
        app.state.services.registry.add(Method("Probe/wait", CORE, wait, False, None))
        slow = [
            asyncio.create_task(post(http, auth, request(["Probe/wait", {}, "w"])))
            for _ in range(2)
        ]
        for _ in slow:
            await started.acquire()
        refused = await post(http, auth, request(["Core/echo", {}, "c"]))
        gate.set()
        finished = await asyncio.gather(*slow)
        assert_problem(refused, 429, "limit")
        assert refused.json()["limit"] == "maxConcurrentRequests"
        assert [r.status_code for r in finished] == [200, 200]
        again = await post(http, auth, request(["Core/echo", {}, "c"]))
        assert again.status_code == 200
