"""The API endpoint as the server reaches it (gateway.app._DirectApi, outside the app's
router) fails as every other route does: a failure nobody expected is a 500 problem document
with an incident id, logged, and counted by the access log; a described one is its own
problem document (here a 401); a method other than POST still gets the router's 405."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from gateway import app as app_module
from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot

API = "/jmap/api/"
PROBLEM = "application/problem+json"


async def test_api_failures_are_problem_documents_outside_the_router(
    dovecot: Dovecot,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user = dovecot.fresh_user()
    auth = httpx.BasicAuth(user, dovecot.users[user])
    body = {"using": ["urn:ietf:params:jmap:core"], "methodCalls": []}

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("token=hunter2")

    settings = gateway_settings(dovecot.url, redis_url)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        fine = await http.post(API, json=body, auth=auth)
        unauthenticated = await http.post(API, json=body)
        wrong_method = await http.put(API, json=body, auth=auth)
        monkeypatch.setattr(app_module, "run_api", broken)
        with caplog.at_level(logging.INFO):
            failed = await http.post(API, json=body, auth=auth)

    assert fine.status_code == 200 and fine.json()["methodResponses"] == []
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["content-type"] == PROBLEM
    assert "www-authenticate" in unauthenticated.headers
    assert wrong_method.status_code == 405
    assert failed.status_code == 500
    assert failed.headers["content-type"] == PROBLEM
    assert "incident" in failed.json()["detail"] and "hunter2" not in failed.text
    logged = [getattr(r, "fields", {}) for r in caplog.records if r.name == "gateway.access"]
    assert {"route": API, "status": 500} in [
        {"route": f.get("route"), "status": f.get("status")} for f in logged
    ], logged
