"""One user can never reach another user's account, whatever account id they send."""

from __future__ import annotations

import json
from typing import Any

import httpx

from gateway.app import create_app
from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext, Method
from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"


async def whose(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    """A probe method taking accountId, as every mail method will."""
    assert ctx.account is not None
    return {"accountId": ctx.account.account_id, "username": ctx.env.principal.username}


async def test_other_account_ids_are_not_found(dovecot: Dovecot, redis_url: str) -> None:
    settings = gateway_settings(dovecot.url, redis_url)
    app = create_app(settings)
    alice = httpx.BasicAuth("alice", dovecot.users["alice"])
    bob = httpx.BasicAuth("bob", dovecot.users["bob"])
    async with running_gateway(settings, app) as url, httpx.AsyncClient(base_url=url) as http:
        app.state.services.registry.add(Method("Probe/whose", MAIL, whose, writes=False))
        accounts = {}
        for name, auth in (("alice", alice), ("bob", bob)):
            session = (await http.get("/jmap/session", auth=auth)).json()
            accounts[name] = session["primaryAccounts"][MAIL]

        async def call(auth: httpx.BasicAuth, account: object) -> list[Any]:
            body = {
                "using": [CORE, MAIL],
                "methodCalls": [["Probe/whose", {"accountId": account}, "c"]],
            }
            response = await http.post(
                "/jmap/api/",
                content=json.dumps(body),
                auth=auth,
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 200
            return response.json()["methodResponses"][0]  # type: ignore[no-any-return]

        assert await call(alice, accounts["alice"]) == [
            "Probe/whose",
            {"accountId": accounts["alice"], "username": "alice"},
            "c",
        ]
        for foreign in (accounts["bob"], accounts["alice"].upper(), "a" + "b" * 24, "bob", ""):
            name, error, _ = await call(alice, foreign)
            assert (name, error["type"]) == ("error", "accountNotFound")
        name, error, _ = await call(alice, 42)
        assert (name, error["type"]) == ("error", "invalidArguments")
        assert (await call(bob, accounts["bob"]))[1]["username"] == "bob"
