"""A JMAP WebSocket that closes while its request runs: the request is cancelled, its upstream
work stops (the gateway reaches Dovecot through tests.faultproxy, which holds the search back)."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.conftest import gateway_settings, running_gateway
from tests.faultproxy import LOOPBACK, FaultProxy
from tests.jmapclient import CORE, MAIL, Jmap
from tests.jmapsocket import basic, jmap_socket, receive
from tests.servers import Dovecot
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


async def test_socket_and_http_share_the_accounts_concurrency_slots(
    dovecot: Dovecot, redis_url: str
) -> None:
    """RFC 8887 4.3.2: maxConcurrentRequests counts the socket's requests with HTTP's."""
    async with FaultProxy(LOOPBACK, dovecot.imap_port) as proxy:
        settings = gateway_settings(proxy.url, redis_url, max_concurrent_requests=1)
        async with (
            running_gateway(settings) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            user = dovecot.fresh_user()
            jmap = await Jmap(http, user, dovecot.users[user]).start()
            witness = dovecot.client(user)
            witness.append("INBOX", "", None, b"Subject: hello\r\n\r\nhello\r\n")
            witness.logout()
            await jmap.call("Mailbox/get")  # the index is built: the query will search INBOX
            held = proxy.hold(rb"UID SEARCH")
            async with jmap_socket(url, basic(user, dovecot.users[user])) as socket:
                query = ["Email/query", {"accountId": jmap.account_id, "filter": SEARCHES}, "q"]
                body = {
                    "@type": "Request",
                    "id": "q",
                    "using": [CORE, MAIL],
                    "methodCalls": [query],
                }
                await socket.send(json.dumps(body))
                async with asyncio.timeout(30):
                    await held.reached.wait()
                # The socket's request holds the one slot: HTTP is refused meanwhile.
                refused = await http.post(
                    "/jmap/api/",
                    json={"using": [CORE, MAIL], "methodCalls": []},
                    auth=jmap.auth,
                )
                assert refused.status_code == 429
                assert refused.json()["limit"] == "maxConcurrentRequests"
                held.release()
                answer = await receive(socket, timeout=30)
                assert (answer["@type"], answer["requestId"]) == ("Response", "q")
            assert await jmap.call("Mailbox/get")  # the slot is free again
