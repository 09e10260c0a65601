"""The warm list screen (Email/query of a folder, newest first, and Email/get of the ids with
the list properties, in one request) costs at most four Redis round trips, counted by the
gateway's own Redis client; and its answer is the same as the first, cold one."""

from __future__ import annotations

import json
from typing import Any

import httpx

from gateway.app import create_app
from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot
from tests.translators.mailseed import seed

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
LIST = ["threadId", "mailboxIds", "from", "subject", "receivedAt", "keywords", "preview"]
WARM_ROUND_TRIPS = 4


def open_inbox(account: str, inbox: str) -> dict[str, Any]:
    query = {
        "accountId": account,
        "filter": {"inMailbox": inbox},
        "sort": [{"property": "receivedAt", "isAscending": False}],
        "limit": 50,
    }
    ids = {"resultOf": "q", "name": "Email/query", "path": "/ids"}
    get = {"accountId": account, "#ids": ids, "properties": LIST}
    return {
        "using": [CORE, MAIL],
        "methodCalls": [["Email/query", query, "q"], ["Email/get", get, "g"]],
    }


async def test_the_warm_list_screen_takes_at_most_four_round_trips(
    dovecot: Dovecot, redis_url: str
) -> None:
    user = dovecot.fresh_user()
    seed(dovecot, user)
    # Within the sync interval, as clients opening a folder again are; GATEWAY_SECRET set, as
    # in production (unset, every request reads the shared secret: one more round trip).
    settings = gateway_settings(dovecot.url, redis_url, sync_interval_seconds=60, secret="k" * 32)
    app = create_app(settings)
    auth = httpx.BasicAuth(user, dovecot.users[user])
    async with running_gateway(settings, app) as url, httpx.AsyncClient(base_url=url) as http:
        session = (await http.get("/jmap/session", auth=auth)).json()
        account = session["primaryAccounts"][MAIL]
        mailboxes = {
            "using": [CORE, MAIL],
            "methodCalls": [
                ["Mailbox/query", {"accountId": account, "filter": {"role": "inbox"}}, "m"]
            ],
        }
        answer = await http.post("/jmap/api/", json=mailboxes, auth=auth)
        inbox = answer.json()["methodResponses"][0][1]["ids"][0]
        body = json.dumps(open_inbox(account, inbox))
        headers = {"content-type": "application/json"}
        cold = await http.post("/jmap/api/", content=body, headers=headers, auth=auth)
        client = app.state.services.store.client
        # The push delivery worker polls its due queue on the same client whatever the
        # requests do: stopped, so what is counted is the request's own.
        await app.state.services.deliveries.stop()
        sent: list[str] = []
        client.observer = lambda name, _seconds, _failure: sent.append(name)
        warm = await http.post("/jmap/api/", content=body, headers=headers, auth=auth)
    assert cold.status_code == warm.status_code == 200
    listed = warm.json()["methodResponses"]
    assert listed == cold.json()["methodResponses"]
    assert len(listed[1][1]["list"]) == len(listed[0][1]["ids"]) > 0
    assert len(sent) <= WARM_ROUND_TRIPS, sent
