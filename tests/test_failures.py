"""Lower-layer failures become the JMAP errors they mean, never a traceback or a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.cache.changes import CannotCalculateChanges
from gateway.env import RequestEnv
from gateway.imap.errors import CommandFailed, ConnectionLost, UpstreamUnavailable
from gateway.jmap.dispatch import CallContext, Method
from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot, RedisServer

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
ECHO = json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {}, "c"]]})


def raiser(exc: Exception) -> Any:
    async def handler(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("exc", "type_"),
    [
        (UpstreamUnavailable("upstream imap.internal:143 down"), "serverUnavailable"),
        (ConnectionLost("gone"), "serverUnavailable"),
        (CommandFailed("NO", None, "Mailbox Secret-Project does not exist"), "serverFail"),
        (CannotCalculateChanges("old state"), "cannotCalculateChanges"),
        (RuntimeError("internal detail /srv/secret"), "serverFail"),
    ],
)
async def test_handler_failures_become_method_errors(
    dovecot: Dovecot, redis_url: str, exc: Exception, type_: str
) -> None:
    settings = gateway_settings(dovecot.url, redis_url)
    app = create_app(settings)
    auth = httpx.BasicAuth("alice", dovecot.users["alice"])
    async with running_gateway(settings, app) as url, httpx.AsyncClient(base_url=url) as http:
        app.state.services.registry.add(Method("Probe/fail", CORE, raiser(exc), False, None))
        body = {"using": [CORE], "methodCalls": [["Probe/fail", {}, "c1"], ["Core/echo", {}, "c2"]]}
        response = await http.post(
            "/jmap/api/",
            content=json.dumps(body),
            auth=auth,
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 200
    failed, echoed = response.json()["methodResponses"]
    assert failed[0] == "error" and failed[1]["type"] == type_
    assert echoed == ["Core/echo", {}, "c2"]
    for leak in ("imap.internal", "Secret-Project", "/srv/secret"):
        assert leak not in response.text


async def test_redis_down_gives_503_then_recovers(
    dovecot: Dovecot, private_redis: RedisServer
) -> None:
    settings = gateway_settings(dovecot.url, private_redis.url)
    auth = httpx.BasicAuth("alice", dovecot.users["alice"])
    headers = {"content-type": "application/json"}
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.post("/jmap/api/", content=ECHO, auth=auth, headers=headers)).is_success
        private_redis.stop()
        response = await http.post("/jmap/api/", content=ECHO, auth=auth, headers=headers)
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        private_redis.start()
        response = await http.post("/jmap/api/", content=ECHO, auth=auth, headers=headers)
        assert response.status_code == 200


async def test_unknown_route_is_a_problem_document(http: httpx.AsyncClient) -> None:
    response = await http.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    response = await http.delete("/jmap/api/")
    assert response.status_code == 405
    assert response.json()["status"] == 405
