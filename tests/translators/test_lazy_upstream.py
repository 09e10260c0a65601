"""Reads the index and the cache answer borrow no upstream connection.

A user may hold only ``pool_max_per_user`` connections. Here that is one, and the test holds
it: within the sync interval, and with what Email/get asks already cached, Mailbox/get and
/query, Email/get, /query and /changes and Thread/get must still answer, with nothing sent
upstream. A method that borrowed its connection up front (as every method did) would wait
``pool_wait_timeout`` for it and answer serverUnavailable; a call that truly needs the
upstream (a text search) still does, which shows the connection really is held.
"""

from __future__ import annotations

import base64
import contextlib
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import Principal
from gateway.env import RequestEnv
from gateway.services import Services
from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.witness import Witness

SUBJECTS = ("first", "second", "third")
LIST_PROPERTIES = ["from", "subject", "receivedAt", "keywords", "preview", "threadId"]


async def principal(services: Services, dovecot: Dovecot, user: str) -> Principal:
    """The caller the requests are, from the credential check they passed (nothing asked)."""
    basic = base64.b64encode(f"{user}:{dovecot.users[user]}".encode()).decode()
    return await services.authenticator.authenticate(f"Basic {basic}", None)


async def cached_reads(jmap: Jmap, ids: list[str], state: str) -> list[list[Any]]:
    return await jmap.request(
        ("Mailbox/get", {}),
        ("Mailbox/query", {}),
        ("Email/query", {"sort": [{"property": "receivedAt", "isAscending": False}]}),
        ("Email/query", {"filter": {"hasKeyword": "$seen"}}),
        ("Email/get", {"ids": ids, "properties": LIST_PROPERTIES}),
        ("Email/changes", {"sinceState": state}),
        ("Thread/get", {"ids": None}),
    )


async def test_cached_reads_borrow_no_connection(dovecot: Dovecot, redis_url: str) -> None:
    user = dovecot.fresh_user()
    with Witness(dovecot, user) as witness:
        for subject in SUBJECTS:
            witness.append("INBOX", subject)
    settings = gateway_settings(
        dovecot.url,
        redis_url,
        sync_interval_seconds=600,
        pool_max_per_user=1,
        pool_wait_timeout=1,
    )
    app = create_app(settings)
    async with running_gateway(settings, app) as url, httpx.AsyncClient(base_url=url) as http:
        jmap = await Jmap(http, user, dovecot.users[user]).start()
        state = (await jmap.call("Email/get", ids=[]))["state"]
        ids = (await jmap.call("Email/query"))["ids"]
        warm = await cached_reads(jmap, ids, state)
        assert sorted(e["subject"] for e in warm[4][1]["list"]) == sorted(SUBJECTS)
        services = app.state.services
        pool = services.pool
        login = (await principal(services, dovecot, user)).login
        async with contextlib.AsyncExitStack() as held:
            for _ in range(settings.pool_max_per_user):
                await held.enter_async_context(pool.connection(login))
            sent = pool.stats().commands

            assert await cached_reads(jmap, ids, state) == warm
            assert pool.stats().commands == sent

            (searched,) = await jmap.request(("Email/query", {"filter": {"text": "first"}}))
            assert searched[0] == "error" and searched[1]["type"] == "serverUnavailable"
        found = await jmap.call("Email/query", filter={"text": "first"})
        assert len(found["ids"]) == 1


async def test_a_catch_up_refuses_to_wait_while_its_request_holds_a_connection(
    dovecot: Dovecot, redis_url: str
) -> None:
    """The catch-up borrows a connection of its own: a request holding one meanwhile could
    hold the one it waits for (every connection of the user held by writers waiting for
    catch-ups would leave none for them)."""
    user = dovecot.fresh_user()
    settings = gateway_settings(dovecot.url, redis_url)
    app = create_app(settings)
    async with running_gateway(settings, app) as url, httpx.AsyncClient(base_url=url) as http:
        await Jmap(http, user, dovecot.users[user]).start()
        services = app.state.services
        env = RequestEnv(services, await principal(services, dovecot, user))
        async with env.upstream() as upstream:
            await upstream.connection()
            with pytest.raises(RuntimeError):
                await env.catch_up()
        await env.catch_up()
        assert env.caught_up.done and env.caught_up.asked_upstream
