"""The transport-neutral API runner against a real Dovecot and Redis, with no HTTP at all.

What issue 15's WebSocket transport will call: a request body and a principal in, the Response
object out, or a request-level failure it sends as an RFC 8887 RequestError.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from gateway import services
from gateway.api_runner import run_api
from gateway.auth import Principal
from gateway.env import RequestEnv
from gateway.jmap.capabilities import CORE, MAIL
from gateway.jmap.dispatch import CallContext, Method
from gateway.jmap.errors import RequestError
from gateway.metrics import Metrics
from gateway.problems import describe
from tests.conftest import gateway_settings
from tests.servers import Dovecot

JSON = "application/json"


@pytest.fixture
async def svc(dovecot: Dovecot, redis_url: str) -> AsyncIterator[services.Services]:
    started = await services.start(
        gateway_settings(dovecot.url, redis_url, max_concurrent_requests=1), Metrics()
    )
    try:
        yield started
    finally:
        await services.stop(started)


async def principal(svc: services.Services, dovecot: Dovecot, user: str) -> Principal:
    token = base64.b64encode(f"{user}:{dovecot.users[user]}".encode()).decode()
    return await svc.authenticator.authenticate(f"Basic {token}", None)


def body(*calls: list[Any], using: tuple[str, ...] = (CORE, MAIL)) -> bytes:
    return orjson.dumps({"using": list(using), "methodCalls": list(calls)})


async def test_a_request_runs_without_a_transport(svc: services.Services, dovecot: Dovecot) -> None:
    alice = await principal(svc, dovecot, "alice")
    calls: list[list[str]] = []
    request = body(
        ["Core/echo", {"x": 1}, "e"], ["Mailbox/get", {"accountId": alice.account_id}, "m"]
    )
    response = await run_api(svc, alice, request, JSON, on_calls=calls.append)
    assert calls == [["Core/echo", "Mailbox/get"]]
    echo, mailboxes = response["methodResponses"]
    assert orjson.loads(orjson.dumps(echo)) == ["Core/echo", {"x": 1}, "e"]
    names = {m["name"] for m in orjson.loads(orjson.dumps(mailboxes))[1]["list"]}
    assert "Inbox" in names
    assert response["sessionState"] == svc.session(alice)["state"]


async def test_request_errors_are_raised_in_the_one_problem_shape(
    svc: services.Services, dovecot: Dovecot
) -> None:
    alice = await principal(svc, dovecot, "alice")
    with pytest.raises(RequestError) as refused:
        await run_api(svc, alice, b"{not json", JSON)
    # RFC 8887 4.3.4: a WebSocket sends the problem document typed RequestError, with the
    # request's id.
    assert describe(refused.value).request_error("R1") == {
        "@type": "RequestError",
        "requestId": "R1",
        "type": "urn:ietf:params:jmap:error:notJSON",
        "status": 400,
        "detail": refused.value.detail,
    }
    with pytest.raises(RequestError) as unknown:
        await run_api(svc, alice, body(using=(CORE, "urn:example:nothing")), JSON)
    assert unknown.value.type == "unknownCapability"


async def test_the_runner_holds_the_accounts_concurrency_slot(
    svc: services.Services, dovecot: Dovecot
) -> None:
    alice, bob = await principal(svc, dovecot, "alice"), await principal(svc, dovecot, "bob")
    gate = asyncio.Event()
    started = asyncio.Event()

    async def wait(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
        started.set()
        await gate.wait()
        return {}

    svc.registry.add(Method("Probe/wait", CORE, wait, False, None))
    slow = asyncio.create_task(run_api(svc, alice, body(["Probe/wait", {}, "w"]), JSON))
    await started.wait()
    with pytest.raises(RequestError) as refused:
        await run_api(svc, alice, body(["Core/echo", {}, "c"]), JSON)
    problem = describe(refused.value)
    assert (problem.status, problem.body["limit"]) == (429, "maxConcurrentRequests")
    assert problem.headers == {"Retry-After": "1"}
    # Another account has its own slots.
    assert (await run_api(svc, bob, body(["Core/echo", {}, "c"]), JSON))["methodResponses"]
    gate.set()
    await slow
    assert (await run_api(svc, alice, body(["Core/echo", {}, "c"]), JSON))["methodResponses"]


async def test_a_cancelled_run_gives_its_slot_back(
    svc: services.Services, dovecot: Dovecot
) -> None:
    # What HTTP's while_connected does when the client goes away mid-request.
    alice = await principal(svc, dovecot, "alice")
    started = asyncio.Event()

    async def hang(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
        started.set()
        await asyncio.Event().wait()
        return {}

    svc.registry.add(Method("Probe/hang", CORE, hang, False, None))
    run = asyncio.create_task(run_api(svc, alice, body(["Probe/hang", {}, "h"]), JSON))
    await started.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert (await run_api(svc, alice, body(["Core/echo", {}, "c"]), JSON))["methodResponses"]
