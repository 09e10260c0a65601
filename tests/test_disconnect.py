"""A client that goes away: its request's upstream work stops, work others share goes on, a
write ends as asked, and nothing is logged as an error.

The gateway reaches Dovecot through tests.faultproxy, which holds a chosen command back: the
client is closed while the gateway waits for that answer, and the commands counted afterwards
(the pool's own count, and the proxy's record) show what the gateway still did.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.config import Settings
from gateway.imap.pool import ImapPool
from tests.conftest import gateway_settings, running_gateway
from tests.faultproxy import LOOPBACK, FaultProxy
from tests.jmapclient import CORE, MAIL, Jmap
from tests.servers import Dovecot
from tests.test_metrics import scrape, value
from tests.translators.mailstate import Mail
from tests.translators.test_email_set import ids_by_key, mailbox_ids

FOLDERS = ("INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive")
# Five text conditions, each beside a condition the index answers, so none can share a SEARCH:
# a UID SEARCH each in every folder that holds mail.
WORDS = ("alpha", "bravo", "charlie", "delta", "echo")
SEARCHES = {
    "operator": "OR",
    "conditions": [{"subject": word, "notKeyword": "$junk"} for word in WORDS],
}
ABANDONED = "jmap_gateway_http_requests_abandoned_total"
REQUESTS = "jmap_gateway_http_requests_total"


@dataclass
class Edge:
    """A gateway behind the proxy, with a fresh user's JMAP client and IMAP witness."""

    settings: Settings
    app: FastAPI
    proxy: FaultProxy
    jmap: Jmap
    mail: Mail
    password: str

    @property
    def pool(self) -> ImapPool:
        return self.app.state.services.pool  # type: ignore[no-any-return]

    async def send(self, *calls: tuple[str, dict[str, Any]]) -> asyncio.StreamWriter:
        """Send an API request on a connection of its own, whose answer nobody reads."""
        return await send_raw(self.settings, self.jmap, self.password, api_body(self.jmap, calls))

    async def counted(self, name: str, expected: float, **labels: str) -> None:
        """Wait until the metric ``name`` (with ``labels``) reaches ``expected``."""
        async with asyncio.timeout(30):
            while value(await scrape(self.settings.metrics_port), name, **labels) < expected:
                await asyncio.sleep(0.02)


def api_body(jmap: Jmap, calls: tuple[tuple[str, dict[str, Any]], ...]) -> bytes:
    method_calls = [
        [name, {"accountId": jmap.account_id, **args}, f"c{i}"]
        for i, (name, args) in enumerate(calls)
    ]
    return json.dumps({"using": [CORE, MAIL], "methodCalls": method_calls}).encode()


async def send_raw(
    settings: Settings, jmap: Jmap, password: str, body: bytes, *, length: int | None = None
) -> asyncio.StreamWriter:
    """POST ``body`` to the API (announcing ``length`` octets) over a raw connection."""
    credentials = base64.b64encode(f"{jmap.username}:{password}".encode()).decode()
    head = (
        "POST /jmap/api/ HTTP/1.1\r\n"
        f"Host: {LOOPBACK}\r\n"
        f"Authorization: Basic {credentials}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    _, writer = await asyncio.open_connection(LOOPBACK, settings.port)
    writer.write(head.encode() + body)
    await writer.drain()
    return writer


async def leave(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
async def edge(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Edge]:
    async with FaultProxy(LOOPBACK, dovecot.imap_port) as proxy:
        settings = gateway_settings(proxy.url, redis_url)
        app = create_app(settings)
        async with (
            running_gateway(settings, app) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            user = dovecot.fresh_user()
            mail = Mail(dovecot, user)
            jmap = await Jmap(http, user, dovecot.users[user]).start()
            yield Edge(settings, app, proxy, jmap, mail, dovecot.users[user])
            mail.close()


async def test_a_query_whose_client_went_away_stops_searching(edge: Edge) -> None:
    for folder in FOLDERS:
        edge.mail.append(folder, folder.lower())
    await edge.jmap.call("Mailbox/get")  # the index is built; one connection stays idle
    held = edge.proxy.hold(rb"UID SEARCH")
    client = await edge.send(("Email/query", {"filter": SEARCHES}))
    async with asyncio.timeout(30):
        await held.reached.wait()
    sent = edge.pool.stats().commands

    await leave(client)
    await edge.counted(ABANDONED, 1)
    held.release()
    await edge.counted(REQUESTS, 1, route="/jmap/api/", status="499")

    after = edge.pool.stats()
    assert after.commands == sent  # not one command after the client left
    # Cancelled while waiting for an answer, the connection was in doubt: dropped, not pooled.
    assert (after.total, after.idle) == (0, 0)
    # The same query to its end: what the client's leaving saved.
    found = await edge.jmap.call("Email/query", filter=SEARCHES)
    assert found["ids"] == []
    assert edge.pool.stats().commands - sent >= len(FOLDERS) * len(WORDS)


async def test_a_sync_others_joined_goes_on_when_its_starter_leaves(edge: Edge) -> None:
    for folder in FOLDERS:
        edge.mail.append(folder, folder.lower())
    catch_up = edge.app.state.services.catch_up
    account = edge.jmap.account_id
    already = len(edge.proxy.commands())
    held = edge.proxy.hold(rb" LIST ")
    starter = await edge.send(("Mailbox/get", {}))
    async with asyncio.timeout(30):
        await held.reached.wait()
    joiner = asyncio.create_task(edge.jmap.call("Mailbox/get"))
    await until(lambda: catch_up.waiting(account) == 2)

    await leave(starter)
    await until(lambda: catch_up.waiting(account) == 1)
    held.release()
    got = await joiner

    assert {m["name"]: m["totalEmails"] for m in got["list"]} == {
        "Inbox" if f == "INBOX" else f: 1 for f in FOLDERS
    }
    await edge.counted(REQUESTS, 1, route="/jmap/api/", status="499")
    assert value(await scrape(edge.settings.metrics_port), ABANDONED) == 1
    verbs = [c.split(b" ")[1].upper() for c in edge.proxy.commands()[already:]]
    # One listing for both requests (the starter's, finished for the joiner), and each folder
    # visited once by the joiner's email sync.
    assert verbs.count(b"LIST") == 1
    assert verbs.count(b"EXAMINE") == len(FOLDERS)


async def test_a_set_whose_client_went_away_ends_as_asked(edge: Edge) -> None:
    edge.mail.append("INBOX", "a")
    edge.mail.append("INBOX", "b")
    ids = await ids_by_key(edge.jmap)
    boxes = await mailbox_ids(edge.jmap)
    # Leaving the Inbox for Archive and Junk: a COPY to one, then a MOVE to the other.
    wanted = {boxes["Archive"]: True, boxes["Junk"]: True}
    held = edge.proxy.hold(rb"UID COPY")
    client = await edge.send(
        ("Email/set", {"update": {ids["a"]: {"mailboxIds": wanted}}}),
        ("Email/set", {"destroy": [ids["b"]]}),
    )
    async with asyncio.timeout(30):
        await held.reached.wait()

    await leave(client)
    await edge.counted(ABANDONED, 1)
    held.release()
    await edge.counted(REQUESTS, 1, route="/jmap/api/", status="499")

    # The write begun ran to its end; the call after it never ran.
    assert edge.mail.folder("INBOX") == {"b": [set()]}
    assert edge.mail.folder("Archive") == {"a": [set()]}
    assert edge.mail.folder("Junk") == {"a": [set()]}
    got = await edge.jmap.call("Email/get", ids=[ids["a"]], properties=["mailboxIds"])
    assert got["list"][0]["mailboxIds"] == wanted


@pytest.mark.parametrize("path", ["/jmap/api/", "/jmap/upload/{account}/"])
async def test_a_client_leaving_mid_body_is_quiet(
    edge: Edge, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = base64.b64encode(f"{edge.jmap.username}:{edge.password}".encode()).decode()
    head = (
        f"POST {path.format(account=edge.jmap.account_id)} HTTP/1.1\r\n"
        f"Host: {LOOPBACK}\r\nAuthorization: Basic {credentials}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    _, writer = await asyncio.open_connection(LOOPBACK, edge.settings.port)
    writer.write(head.encode() + b'{"using": [' + b" " * 50_000)
    await writer.drain()
    await edge.counted("jmap_gateway_http_requests_in_flight", 1)
    await leave(writer)

    route = path.replace("{account}", "{account_id}")
    await edge.counted(REQUESTS, 1, route=route, status="499")
    samples = await scrape(edge.settings.metrics_port)
    assert value(samples, "jmap_gateway_http_requests_in_flight") == 0
    assert value(samples, ABANDONED) == 0  # no work had begun
    assert value(samples, REQUESTS, status="500") == 0
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
