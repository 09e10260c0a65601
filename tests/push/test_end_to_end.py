"""End to end on Dovecot (NOTIFY) and on Cyrus (IDLE and the poll): another IMAP session
appends, flags, expunges and creates a folder, and an EventSource (httpx streaming) and a JMAP
WebSocket (the ``websockets`` client) of the account each hear the types that changed, up to
the states each type's /get then answers. No API request is made until they heard it.
"""

from __future__ import annotations

import asyncio
import imaplib
import json
from collections.abc import Callable

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from tests.conftest import gateway_settings, running_gateway
from tests.cyrus import Cyrus
from tests.jmapclient import CORE, MAIL
from tests.jmapsocket import basic, jmap_socket, receive
from tests.push.eventsource_client import stream
from tests.push.sse import Stream
from tests.push.watching import imap, message
from tests.servers import Dovecot

WAIT = 30.0
TYPES = ("Mailbox", "Email", "Thread")


class Listeners:
    """The states each listener was last told, per type."""

    def __init__(self, sse: Stream, socket: ClientConnection, account: str) -> None:
        self.sse, self.socket, self.account = sse, socket, account
        self.told: dict[str, dict[str, str]] = {"sse": {}, "ws": {}}

    async def _next(self, which: str) -> dict[str, str]:
        if which == "sse":
            event = await self.sse.next(WAIT)
            assert event.type == "state", event
            body = event.json()
        else:
            body = await receive(self.socket, WAIT)
            if body["@type"] != "StateChange":
                return {}
        assert body["@type"] == "StateChange"
        return dict(body["changed"].get(self.account, {}))

    async def hear(self, wanted: set[str]) -> None:
        """Until both listeners were told a new state of every type in ``wanted``."""
        for which in ("sse", "ws"):
            before = dict(self.told[which])
            async with asyncio.timeout(WAIT):
                while any(self.told[which].get(t) == before.get(t) for t in wanted):
                    self.told[which].update(await self._next(which))

    async def agree_with(self, truth: dict[str, str]) -> None:
        """Both listeners come to the states /get answers (a catch-up after the first may
        still be telling its part)."""
        for which in ("sse", "ws"):
            async with asyncio.timeout(WAIT):
                while {t: self.told[which].get(t) for t in truth} != truth:
                    self.told[which].update(await self._next(which))


async def states(
    http: httpx.AsyncClient, url: str, auth: httpx.Auth, account: str
) -> dict[str, str]:
    calls = [[f"{t}/get", {"accountId": account, "ids": []}, t] for t in TYPES]
    body = {"using": [CORE, MAIL], "methodCalls": calls}
    answer = (await http.post(url + "/jmap/api/", json=body, auth=auth)).json()
    return {call[2]: call[1]["state"] for call in answer["methodResponses"]}


def flag(c: imaplib.IMAP4) -> None:
    c.select("INBOX")
    c.store("1", "+FLAGS", "\\Flagged")


def expunge(c: imaplib.IMAP4) -> None:
    c.select("INBOX")
    c.store("1", "+FLAGS", "\\Deleted")
    c.expunge()


CHANGES: list[tuple[str, Callable[[imaplib.IMAP4], object], set[str]]] = [
    ("append", lambda c: c.append("INBOX", "", None, message("pushed")), {"Email", "Thread"}),
    ("flag", flag, {"Email"}),
    ("expunge", expunge, {"Email", "Thread"}),
    ("create a folder", lambda c: c.create("Projects"), {"Mailbox"}),
]


@pytest.mark.parametrize("upstream", ["dovecot", "cyrus"])
async def test_upstream_changes_reach_eventsource_and_websocket(
    upstream: str, request: pytest.FixtureRequest, redis_url: str
) -> None:
    server: Dovecot | Cyrus = request.getfixturevalue(upstream)
    user = server.fresh_user()
    password = server.users[user]
    auth = httpx.BasicAuth(user, password)
    # Cyrus has no NOTIFY: a new folder is found by the poll, kept short here.
    settings = gateway_settings(server.url, redis_url, push_poll_seconds=2)
    async with (
        running_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=WAIT) as http,
    ):
        session = (await http.get("/jmap/session", auth=auth)).json()
        account = session["primaryAccounts"][MAIL]
        query = {"types": ",".join(TYPES), "closeafter": "no", "ping": "0"}
        async with stream(http, auth, query) as sse, jmap_socket(url, basic(user, password)) as ws:
            await ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": list(TYPES)}))
            listeners = Listeners(sse, ws, account)
            # The EventSource's first event: the current states.
            listeners.told["sse"].update(await listeners._next("sse"))
            listeners.told["ws"].update(listeners.told["sse"])
            for name, change, changed in CHANGES:
                await imap(server, user, change)
                await listeners.hear(changed)
                await listeners.agree_with(await states(http, url, auth, account))
                assert all(t in listeners.told["ws"] for t in changed), name
