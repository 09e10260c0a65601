"""The catch-up sync: one round trip once synced, shared syncs, replicas on one Redis, ids."""

from __future__ import annotations

import asyncio

import httpx
import redis

from gateway.app import create_app
from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.witness import Witness


async def test_two_hundred_folders_one_round_trip(dovecot: Dovecot, redis_url: str) -> None:
    user = dovecot.fresh_user()
    with Witness(dovecot, user) as witness:
        for i in range(200):
            witness.create(f"Folder {i:03d}")
    settings = gateway_settings(dovecot.url, redis_url)
    app = create_app(settings)
    async with running_gateway(settings, app) as url, httpx.AsyncClient(base_url=url) as http:
        jmap = await Jmap(http, user, dovecot.users[user]).start()
        assert len(await jmap.mailboxes()) == 206
        pool = app.state.services.pool
        before = pool.stats()
        listed = await jmap.call("Mailbox/get", ids=None)
        assert len(listed["list"]) == 206
        after = pool.stats()
        # The LIST, after an UNSELECT of the folder the first request's email sync left
        # selected when there was one: pipelined, so one round trip either way.
        assert after.round_trips - before.round_trips == 1
        assert after.commands - before.commands in (1, 2)


async def test_concurrent_requests_share_one_sync(dovecot: Dovecot, redis_url: str) -> None:
    user = dovecot.fresh_user()
    settings = gateway_settings(dovecot.url, redis_url)
    app = create_app(settings)
    async with running_gateway(settings, app) as url, httpx.AsyncClient(base_url=url) as http:
        jmap = await Jmap(http, user, dovecot.users[user]).start()
        await jmap.mailboxes()
        pool = app.state.services.pool
        before = pool.stats()
        results = await asyncio.gather(*(jmap.call("Mailbox/get", ids=None) for _ in range(8)))
        assert len({r["state"] for r in results}) == 1
        after = pool.stats()
        # Each connection opened meanwhile sent ID (the client's address), AUTHENTICATE,
        # ENABLE and STATUS INBOX (the upstream's id of the user).
        setup = 4 * (after.opened - before.opened)
        # Eight requests, fewer LISTs: requests that arrive during a sync join it.
        assert after.commands - before.commands - setup < 8


async def test_two_gateways_on_one_redis_agree(dovecot: Dovecot, redis_url: str) -> None:
    user = dovecot.fresh_user()
    first, second = (
        gateway_settings(dovecot.url, redis_url),
        gateway_settings(dovecot.url, redis_url),
    )
    async with (
        running_gateway(first) as url_a,
        running_gateway(second) as url_b,
        httpx.AsyncClient(base_url=url_a) as http_a,
        httpx.AsyncClient(base_url=url_b) as http_b,
    ):
        a = await Jmap(http_a, user, dovecot.users[user]).start()
        b = await Jmap(http_b, user, dovecot.users[user]).start()
        assert a.account_id == b.account_id
        state = (await a.call("Mailbox/get", ids=[]))["state"]
        with Witness(dovecot, user) as witness:
            witness.create("Seen by both")

        async def changes(client: Jmap) -> dict[str, object]:
            return await client.call("Mailbox/changes", sinceState=state)

        from_a, from_b = await asyncio.gather(changes(a), changes(b))
        assert from_a["created"] == from_b["created"] and len(from_a["created"]) == 1
        assert from_a["newState"] == from_b["newState"]
        made = await b.call("Mailbox/set", create={"k": {"name": "Made on B"}})
        boxes_a = await a.mailboxes()
        assert boxes_a["Made on B"]["id"] == made["created"]["k"]["id"]
        assert (await a.call("Mailbox/get", ids=[]))["state"] == made["newState"]


async def test_gateway_assigned_ids(
    dovecot: Dovecot, http: httpx.AsyncClient, redis_url: str
) -> None:
    """Without OBJECTID or X-GUID, ids live in Redis and follow renames made via the gateway."""
    user = dovecot.fresh_user()
    jmap = await Jmap(http, user, dovecot.users[user]).start()
    client = redis.Redis.from_url(redis_url)
    client.hset(f"jg:{{{jmap.account_id}}}:meta", "mailbox-ids", "gateway")
    client.close()
    created = await jmap.call(
        "Mailbox/set", create={"p": {"name": "Parent"}, "c": {"name": "Child", "parentId": "#p"}}
    )
    parent, child = created["created"]["p"]["id"], created["created"]["c"]["id"]
    assert parent.startswith("g") and child.startswith("g")
    await jmap.call("Mailbox/set", update={parent: {"name": "Renamed"}})
    boxes = await jmap.mailboxes()
    assert boxes["Renamed"]["id"] == parent and boxes["Renamed/Child"]["id"] == child
    with Witness(dovecot, user) as witness:
        witness.rename("Renamed", "Elsewhere")
    boxes = await jmap.mailboxes()
    # A rename by another client cannot be told from delete plus create.
    assert boxes["Elsewhere"]["id"] not in (parent, child)
    inbox_before = boxes["Inbox"]["id"]
    assert (await jmap.mailboxes())["Inbox"]["id"] == inbox_before


async def test_within_the_sync_interval_requests_trust_the_index(
    dovecot: Dovecot, redis_url: str
) -> None:
    user = dovecot.fresh_user()
    # Long enough for the two requests below; the process then remembers the mark until it
    # expires (gateway.cache.freshness.FreshMarks), so its end is waited for, not simulated.
    settings = gateway_settings(dovecot.url, redis_url, sync_interval_seconds=5)
    app = create_app(settings)
    async with running_gateway(settings, app) as url, httpx.AsyncClient(base_url=url) as http:
        jmap = await Jmap(http, user, dovecot.users[user]).start()
        first = await jmap.call("Email/query")
        pool = app.state.services.pool
        with Witness(dovecot, user) as witness:
            witness.append("INBOX", "arrived meanwhile")
        before = pool.stats().round_trips
        again = await jmap.call("Email/query")
        # Trusted: no upstream round trip, and the new message not seen yet.
        assert pool.stats().round_trips == before and again["ids"] == first["ids"]
        # Once the interval is over, the next request catches up.
        async with asyncio.timeout(30):
            while len((await jmap.call("Email/query"))["ids"]) != len(first["ids"]) + 1:
                await asyncio.sleep(0.2)
