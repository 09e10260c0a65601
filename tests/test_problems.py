"""Every request-level failure becomes one problem document, in one place (gateway.problems).

The expected documents and headers are the ones the HTTP handlers wrote before the formatter
existed; the same function gives a WebSocket (RFC 8887) its RequestError.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import pytest
import redis.exceptions
from fastapi import Request

from gateway.app import create_app
from gateway.cache.locks import LeaseLost, LockTimeout
from gateway.imap.errors import CommandFailed, ConnectionLost
from gateway.jmap.errors import RequestError
from gateway.problems import HttpProblem, describe, too_many_concurrent
from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot

STORE_DOWN = {
    "type": "about:blank",
    "title": "Service Unavailable",
    "status": 503,
    "detail": "The gateway's state store is unavailable.",
}
UPSTREAM_DOWN = {**STORE_DOWN, "detail": "The upstream mail server is unavailable."}
RETRY = {"Retry-After": "5"}

CASES: dict[str, tuple[Exception, dict[str, Any], dict[str, str]]] = {
    "notJSON": (
        RequestError("notJSON", "Not JSON."),
        {"type": "urn:ietf:params:jmap:error:notJSON", "status": 400, "detail": "Not JSON."},
        {},
    ),
    "too large": (
        RequestError.limit_exceeded("maxSizeRequest", "Too big."),
        {
            "type": "urn:ietf:params:jmap:error:limit",
            "status": 400,
            "detail": "Too big.",
            "limit": "maxSizeRequest",
        },
        {},
    ),
    "concurrency": (
        too_many_concurrent("maxConcurrentRequests", "Busy."),
        {
            "type": "urn:ietf:params:jmap:error:limit",
            "status": 429,
            "detail": "Busy.",
            "limit": "maxConcurrentRequests",
        },
        {"Retry-After": "1"},
    ),
    "upload quota": (
        RequestError("limit", "Full.", limit="uploadQuota", status=413),
        {
            "type": "urn:ietf:params:jmap:error:limit",
            "status": 413,
            "detail": "Full.",
            "limit": "uploadQuota",
        },
        {},
    ),
    "raised problem": (
        HttpProblem(
            {"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": "Who?"},
            {"WWW-Authenticate": 'Basic realm="jmap"'},
        ),
        {"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": "Who?"},
        {"WWW-Authenticate": 'Basic realm="jmap"'},
    ),
    "redis down": (redis.exceptions.ConnectionError("refused"), STORE_DOWN, RETRY),
    "upstream down": (ConnectionLost("reset"), UPSTREAM_DOWN, RETRY),
    "upstream refused": (CommandFailed("NO", None, "no"), UPSTREAM_DOWN, RETRY),
    "lock timeout": (LockTimeout("held"), UPSTREAM_DOWN, RETRY),
    "lease lost": (LeaseLost("gone"), UPSTREAM_DOWN, RETRY),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_failure_has_its_document(case: str) -> None:
    exc, body, headers = CASES[case]
    problem = describe(exc)
    assert (problem.status, problem.body, problem.headers) == (body["status"], body, headers)


def test_an_unexpected_failure_is_a_500_with_an_incident_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    problem = describe(RuntimeError("token=hunter2 at /srv/secret"))
    assert problem.status == 500 and problem.headers == {}
    assert problem.body["title"] == "Internal Server Error"
    incident = re.fullmatch(r"Unexpected error; incident ([0-9a-f]{12})\.", problem.body["detail"])
    assert incident is not None
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert incident[1] in record.getMessage() and record.exc_info is not None
    assert "hunter2" not in str(problem.body)


def test_the_websocket_form_is_the_same_document() -> None:
    # RFC 8887 4.3.4: "@type": "RequestError", and the requestId when the request had one.
    problem = describe(CASES["concurrency"][0])
    assert problem.request_error("R7") == {
        "@type": "RequestError",
        "requestId": "R7",
        **CASES["concurrency"][1],
    }
    assert problem.request_error(None) == {"@type": "RequestError", **CASES["concurrency"][1]}


async def test_http_sends_each_document_as_it_is_described(
    dovecot: Dovecot, redis_url: str
) -> None:
    settings = gateway_settings(dovecot.url, redis_url)
    app = create_app(settings)

    @app.get("/test-failure/{case}")
    async def fail(request: Request, case: str) -> None:
        raise CASES[case][0]

    @app.get("/test-unexpected")
    async def unexpected(request: Request) -> None:
        raise RuntimeError("token=hunter2")

    async with running_gateway(settings, app) as url, httpx.AsyncClient(base_url=url) as http:
        for case, (_, body, headers) in CASES.items():
            response = await http.get(f"/test-failure/{case}")
            assert response.status_code == body["status"], case
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json() == body
            for name, value in headers.items():
                assert response.headers[name] == value
        response = await http.get("/test-unexpected")
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        assert "incident" in response.json()["detail"] and "hunter2" not in response.text
