"""End to end: a change made by another IMAP client reaches a JMAP WebSocket (RFC 8887) with
no API request, through the account's watcher, the journal and the hub."""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.jmapclient import Jmap
from tests.jmapsocket import basic, jmap_socket, receive_where
from tests.push.watching import imap, message
from tests.servers import Dovecot

ECHO = {"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Core/echo", {}, "e"]]}


async def changed(socket: ClientConnection, account_id: str, data_type: str) -> dict[str, Any]:
    return await receive_where(
        socket,
        lambda m: m["@type"] == "StateChange" and data_type in m["changed"].get(account_id, {}),
    )


async def test_an_upstream_change_is_pushed_without_a_request(
    gateway: str, dovecot: Dovecot, jmap: Jmap
) -> None:
    auth = basic(jmap.username, dovecot.users[jmap.username])
    async with jmap_socket(gateway, auth) as socket:
        await socket.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
        await socket.send(json.dumps({"@type": "Request", "id": "sync", **ECHO}))
        await receive_where(socket, lambda m: m.get("requestId") == "sync")
        await imap(dovecot, jmap.username, lambda c: c.append("INBOX", "", None, message("pushed")))
        # Nothing else changes the account's emails: this can only be the watcher's catch-up.
        change = await changed(socket, jmap.account_id, "Email")
        # The state pushed is the one Email/get answers (nothing changed since).
        state = (await jmap.call("Email/get", ids=[]))["state"]
        assert change["changed"][jmap.account_id]["Email"] == state
