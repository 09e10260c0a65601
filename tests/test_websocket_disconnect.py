"""A JMAP WebSocket that closes while its request runs: the request is cancelled, its upstream
work stops (the gateway reaches Dovecot through tests.faultproxy, which holds the search back)."""

from __future__ import annotations

import asyncio
import json

from tests.faultproxy import LOOPBACK
from tests.jmapclient import CORE, MAIL
from tests.jmapsocket import basic, jmap_socket
from tests.test_disconnect import FOLDERS, SEARCHES, Edge, until
from tests.test_disconnect import edge as edge  # the fixture, re-exported for pytest


async def test_a_request_running_when_its_socket_closes_stops(edge: Edge) -> None:
    for folder in FOLDERS:
        edge.mail.append(folder, folder.lower())
    await edge.jmap.call("Mailbox/get")  # the index is built; one connection stays idle
    held = edge.proxy.hold(rb"UID SEARCH")
    base_url = f"http://{LOOPBACK}:{edge.settings.port}"
    async with jmap_socket(base_url, basic(edge.jmap.username, edge.password)) as socket:
        query = ["Email/query", {"accountId": edge.jmap.account_id, "filter": SEARCHES}, "q"]
        request = {"@type": "Request", "id": "q", "using": [CORE, MAIL], "methodCalls": [query]}
        await socket.send(json.dumps(request))
        async with asyncio.timeout(30):
            await held.reached.wait()
        sent = edge.pool.stats().commands
    # Cancelled while waiting for its answer, the connection was in doubt: dropped, not pooled.
    await until(lambda: edge.pool.stats().total == 0)
    held.release()
    assert edge.pool.stats().commands == sent  # not one command after the socket closed
    # The account's concurrency slot is free again: a request over HTTP runs.
    assert (await edge.jmap.call("Email/query", filter=SEARCHES))["ids"] == []
