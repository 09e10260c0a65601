"""Reads of threads inside the freshness window never answer from another release's layout
(review 16c M3): a rolling upgrade may reset the index to another format while this replica
still trusts it as caught up, and an answer from it would make every thread notFound.

Ground truth: the index's format field and keys read with a plain Redis client, the mail
appended with a plain IMAP session, and the answers over HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis

from gateway.cache.keys import INDEX_FORMAT, INDEX_FORMAT_FIELD, AccountKeys
from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.sync.test_thread_refs import message

# The index is trusted throughout the test: only a read's own finding may end that.
TRUSTING = 3600


@pytest.fixture
async def trusting(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Jmap]:
    settings = gateway_settings(dovecot.url, redis_url, sync_interval_seconds=TRUSTING)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        user = dovecot.fresh_user()
        imap = dovecot.client(user)
        try:
            imap.append("INBOX", None, None, message("f1", "Fence"))
            imap.append("INBOX", None, None, message("f2", "Re: Fence", ("f1",)))
        finally:
            imap.logout()
        yield await Jmap(http, user, dovecot.users[user]).start()


async def thread_get(jmap: Jmap, thread_id: str | None) -> tuple[httpx.Response, list[Any]]:
    """Thread/get of one thread (None: of all, as the thread table lists them)."""
    ids = None if thread_id is None else [thread_id]
    body = {
        "using": list(jmap.using),
        "methodCalls": [["Thread/get", {"accountId": jmap.account_id, "ids": ids}, "t"]],
    }
    response = await jmap.http.post(
        "/jmap/api/",
        content=json.dumps(body),
        auth=jmap.auth,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    [answer] = response.json()["methodResponses"]
    return response, answer


async def the_thread(jmap: Jmap) -> tuple[str, list[str]]:
    ids = (await jmap.call("Email/query"))["ids"]
    emails = (await jmap.call("Email/get", ids=ids, properties=["threadId"]))["list"]
    (thread_id,) = {e["threadId"] for e in emails}
    (thread,) = (await jmap.call("Thread/get", ids=[thread_id]))["list"]
    assert len(thread["emailIds"]) == 2
    return thread_id, thread["emailIds"]


async def test_an_index_reset_to_an_older_format_is_caught_up_not_read(
    trusting: Jmap, redis_url: str
) -> None:
    jmap = trusting
    thread_id, members = await the_thread(jmap)
    keys = AccountKeys(jmap.account_id)
    plain = redis.Redis.from_url(redis_url)
    try:
        # A replica of the format-3 release resets the index to its layout (no thread
        # table) while this one, caught up moments ago, still trusts it.
        plain.delete(*plain.keys(keys.thread_bucket("*")))
        plain.hset(keys.meta, INDEX_FORMAT_FIELD, str(INDEX_FORMAT - 1))
        response, (name, arguments, _) = await thread_get(jmap, thread_id)
        assert (name, arguments["type"]) == ("error", "serverUnavailable"), arguments
        assert f"format {INDEX_FORMAT - 1}" in arguments["description"]
        assert int(response.headers["retry-after"]) > 0
        # The retry catches up: the index is this release's again and answers the thread.
        _, (name, arguments, _) = await thread_get(jmap, thread_id)
        assert name == "Thread/get", arguments
        assert arguments["notFound"] == []
        assert arguments["list"] == [{"id": thread_id, "emailIds": members}]
        assert plain.hget(keys.meta, INDEX_FORMAT_FIELD) == str(INDEX_FORMAT).encode()
    finally:
        plain.close()


async def test_an_index_of_a_newer_format_is_not_read_inside_the_window(
    trusting: Jmap, redis_url: str
) -> None:
    jmap = trusting
    thread_id, members = await the_thread(jmap)
    keys = AccountKeys(jmap.account_id)
    plain = redis.Redis.from_url(redis_url)
    try:
        newer = str(INDEX_FORMAT + 1)
        plain.hset(keys.meta, INDEX_FORMAT_FIELD, newer)
        held = sorted(plain.keys(f"jg:{{{jmap.account_id}}}:*"))
        for asked in (thread_id, thread_id, None):
            response, (name, arguments, _) = await thread_get(jmap, asked)
            assert (name, arguments["type"]) == ("error", "serverUnavailable"), arguments
            assert f"format {newer}" in arguments["description"]
            assert int(response.headers["retry-after"]) > 0
        assert sorted(plain.keys(f"jg:{{{jmap.account_id}}}:*")) == held  # nothing reset
        plain.hset(keys.meta, INDEX_FORMAT_FIELD, str(INDEX_FORMAT))  # rolled back
        for asked in (thread_id, None):
            (_, arguments, _) = (await thread_get(jmap, asked))[1]
            assert arguments["list"] == [{"id": thread_id, "emailIds": members}]
    finally:
        plain.close()
