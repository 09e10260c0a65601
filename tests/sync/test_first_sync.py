"""An account's first indexing against its clients' patience (GATEWAY_SYNC_WAIT_SECONDS).

The upstream is reached through a FaultProxy that holds the second page's UID FETCH, so the
first indexing is deterministically half way (its first 500 messages committed) for as long
as a test wants, whatever the machine's speed; the wait is 0.5 s. Ground truth is a plain
imaplib session's UID list. Nothing here measures time.
"""

from __future__ import annotations

import asyncio
import imaplib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.cache.account import AccountIndex
from gateway.cache.changes import AccountState
from gateway.cache.emails import EMAIL
from gateway.cache.index_format import FORMAT_FIELD, INDEX_FORMAT
from gateway.cache.keys import AccountKeys
from gateway.cache.store import Store
from tests.conftest import gateway_settings, running_gateway
from tests.faultproxy import FaultProxy, Hold
from tests.gateways import running_gateways
from tests.servers import Dovecot

COUNT = 600
# The second page of 500 (gateway.sync.emails.PAGE): held, the first one is in the index.
SECOND_PAGE = rb"UID FETCH 501:"
WAIT = "0.5"
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
# Generous: a loaded machine may take a while to index 600 messages.
SETTLE_SECONDS = 60.0


def seed(dovecot: Dovecot, user: str, count: int = COUNT) -> None:
    """``count`` small messages in the INBOX, 100 per MULTIAPPEND (LITERAL+)."""
    with socket.create_connection(("127.0.0.1", dovecot.imap_port), timeout=60) as sock:
        replies = sock.makefile("rb")
        replies.readline()

        def command(tag: bytes, text: bytes) -> None:
            sock.sendall(tag + b" " + text + b"\r\n")
            while not (line := replies.readline()).startswith(tag + b" "):
                assert line, "the server closed the connection"
            assert line.startswith(tag + b" OK"), line

        command(b"a", b'LOGIN "%s" "%s"' % (user.encode(), dovecot.users[user].encode()))
        for start in range(0, count, 100):
            parts = []
            for i in range(start, min(count, start + 100)):
                raw = (
                    b"Message-ID: <m%d@first.example>\r\nSubject: message %d\r\n"
                    b"From: a@example.com\r\n\r\nbody %d\r\n" % (i, i, i)
                )
                parts.append(b"{%d+}\r\n%s" % (len(raw), raw))
            command(b"b%d" % start, b"APPEND INBOX " + b" ".join(parts))


def upstream_uids(dovecot: Dovecot, user: str) -> set[int]:
    conn = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
    conn.login(user, dovecot.users[user])
    conn.select("INBOX", readonly=True)
    _, data = conn.uid("SEARCH", "ALL")
    conn.logout()
    return {int(n) for n in data[0].split()}


async def post(http: httpx.AsyncClient, auth: httpx.BasicAuth, *calls: Any) -> httpx.Response:
    body = {"using": USING, "methodCalls": [[n, a, f"c{i}"] for i, (n, a) in enumerate(calls)]}
    return await http.post(
        "/jmap/api/",
        content=json.dumps(body),
        auth=auth,
        headers={"content-type": "application/json"},
    )


async def account_of(http: httpx.AsyncClient, auth: httpx.BasicAuth) -> str:
    session = (await http.get("/jmap/session", auth=auth)).json()
    return str(session["primaryAccounts"]["urn:ietf:params:jmap:mail"])


async def email_get(http: httpx.AsyncClient, auth: httpx.BasicAuth, account: str) -> Any:
    return await post(http, auth, ("Email/get", {"accountId": account, "ids": []}))


def unavailable(response: httpx.Response) -> str:
    """The description of a serverUnavailable answer (with Retry-After), else fail."""
    assert response.status_code == 200, response.text
    [(name, arguments, _)] = response.json()["methodResponses"]
    assert (name, arguments["type"]) == ("error", "serverUnavailable"), arguments
    assert int(response.headers["retry-after"]) > 0
    assert "first indexing is in progress" in arguments["description"]
    return str(arguments["description"])


async def settle(index: AccountIndex) -> None:
    """Wait until the index says it is complete."""
    async with asyncio.timeout(SETTLE_SECONDS):
        while not await index.emails.indexed():
            await asyncio.sleep(0.05)


async def half_way(held: Hold, index: AccountIndex) -> None:
    """Wait until the second page's FETCH is held and the first page is in the index (the
    FETCH goes out while the first page is still being written)."""
    await held.reached.wait()
    async with asyncio.timeout(SETTLE_SECONDS):
        while await index.emails.count() < 500:
            await asyncio.sleep(0.05)


async def indexed_uids(index: AccountIndex) -> set[int]:
    [inbox] = [m.id for m in (await index.mailboxes.load()).values() if m.name == "INBOX"]
    return set(await index.emails.uid_map(inbox))


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(redis_url)
    yield store
    await store.close()


@pytest.fixture
async def proxy(dovecot: Dovecot) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", dovecot.imap_port) as proxy:
        yield proxy


@pytest.fixture
def user(dovecot: Dovecot) -> str:
    user = dovecot.fresh_user()
    seed(dovecot, user)
    return user


async def test_a_request_during_the_first_indexing_gets_server_unavailable_then_the_answer(
    dovecot: Dovecot, redis_url: str, store: Store, proxy: FaultProxy, user: str
) -> None:
    held = proxy.hold(SECOND_PAGE)
    auth = httpx.BasicAuth(user, dovecot.users[user])
    settings = gateway_settings(proxy.url, redis_url, sync_wait_seconds=float(WAIT))
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        account = await account_of(http, auth)
        index = AccountIndex.of(store.client, account)
        unavailable(await email_get(http, auth, account))
        await half_way(held, index)
        # Half way: the first page is in, and the answer says how far it is.
        assert "500 of about 600 messages" in unavailable(await email_get(http, auth, account))
        # Every method that needs the index says the same, Mailbox/get included; a request's
        # later calls at once, without waiting again.
        both = await post(
            http,
            auth,
            ("Mailbox/get", {"accountId": account}),
            ("Thread/get", {"accountId": account, "ids": []}),
        )
        assert int(both.headers["retry-after"]) > 0
        assert [(n, a["type"]) for n, a, _ in both.json()["methodResponses"]] == [
            ("error", "serverUnavailable"),
            ("error", "serverUnavailable"),
        ]
        assert not await index.emails.indexed()
        # A state handed out half way (push hears each batch) cannot be a base for changes.
        early = await AccountState(store.client, account).state(EMAIL)
        held.release()
        await settle(index)
        answer = (await email_get(http, auth, account)).json()["methodResponses"][0]
        assert answer[0] == "Email/get", answer
        query = await post(http, auth, ("Email/query", {"accountId": account, "limit": 1000}))
        assert len(query.json()["methodResponses"][0][1]["ids"]) == COUNT
        changes = await post(
            http, auth, ("Email/changes", {"accountId": account, "sinceState": early})
        )
        [(name, arguments, _)] = changes.json()["methodResponses"]
        assert (name, arguments["type"]) == ("error", "cannotCalculateChanges")
    assert await indexed_uids(index) == upstream_uids(dovecot, user)


async def test_a_client_that_goes_away_does_not_stop_the_first_indexing(
    dovecot: Dovecot, redis_url: str, store: Store, proxy: FaultProxy, user: str
) -> None:
    held = proxy.hold(SECOND_PAGE)
    auth = httpx.BasicAuth(user, dovecot.users[user])
    # Patient requests: only the client's going away ends this one.
    settings = gateway_settings(proxy.url, redis_url, sync_wait_seconds=600.0)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        account = await account_of(http, auth)
        index = AccountIndex.of(store.client, account)
        request = asyncio.create_task(email_get(http, auth, account))
        await held.reached.wait()
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        held.release()
        await settle(index)
    assert await indexed_uids(index) == upstream_uids(dovecot, user)
    assert await index.emails.count() == COUNT


async def test_another_replica_gives_the_same_answer_during_the_first_indexing(
    dovecot: Dovecot, redis_url: str, store: Store, proxy: FaultProxy, user: str
) -> None:
    held = proxy.hold(SECOND_PAGE)
    auth = httpx.BasicAuth(user, dovecot.users[user])
    settings = gateway_settings(proxy.url, redis_url, sync_wait_seconds=float(WAIT))
    async with (
        running_gateway(settings) as url,
        httpx.AsyncClient(base_url=url) as http,
        # A replica of its own, straight to Dovecot: the held lease keeps it out.
        running_gateways(
            1, imap_url=dovecot.url, redis_url=redis_url, GATEWAY_SYNC_WAIT_SECONDS=WAIT
        ) as [replica],
        httpx.AsyncClient(base_url=replica.base_url) as other,
    ):
        account = await account_of(http, auth)
        index = AccountIndex.of(store.client, account)
        unavailable(await email_get(http, auth, account))
        await half_way(held, index)
        assert "500 of about 600 messages" in unavailable(await email_get(other, auth, account))
        held.release()
        await settle(index)
        answer = (await email_get(other, auth, account)).json()["methodResponses"][0]
        assert answer[0] == "Email/get", answer
    assert await indexed_uids(index) == upstream_uids(dovecot, user)


async def test_shutdown_stops_a_first_indexing_and_the_next_catch_up_completes_it(
    dovecot: Dovecot, redis_url: str, store: Store, proxy: FaultProxy, user: str
) -> None:
    held: Hold = proxy.hold(SECOND_PAGE)
    auth = httpx.BasicAuth(user, dovecot.users[user])
    settings = gateway_settings(proxy.url, redis_url, sync_wait_seconds=float(WAIT))
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        account = await account_of(http, auth)
        index = AccountIndex.of(store.client, account)
        unavailable(await email_get(http, auth, account))
        await half_way(held, index)
    # The gateway stopped with the indexing held half way (the shutdown did not wait for
    # the upstream): half an index, not marked complete.
    assert not await index.emails.indexed()
    assert 0 < await index.emails.count() < COUNT
    held.release()
    settings = gateway_settings(dovecot.url, redis_url, sync_wait_seconds=600.0)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        answer = (await email_get(http, auth, account)).json()["methodResponses"][0]
        assert answer[0] == "Email/get", answer
    assert await index.emails.indexed()
    assert await indexed_uids(index) == upstream_uids(dovecot, user)
    assert await index.emails.count() == COUNT


async def test_a_later_catch_up_past_the_wait_answers_from_the_index_as_it_stands(
    dovecot: Dovecot, redis_url: str, store: Store, proxy: FaultProxy, user: str
) -> None:
    auth = httpx.BasicAuth(user, dovecot.users[user])
    settings = gateway_settings(proxy.url, redis_url, sync_wait_seconds=float(WAIT))
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        account = await account_of(http, auth)
        index = AccountIndex.of(store.client, account)
        # The first indexing, answered or not within the wait, then complete.
        await email_get(http, auth, account)
        await settle(index)
        before = (await email_get(http, auth, account)).json()["methodResponses"][0][1]["state"]
        with dovecot.client(user) as witness:
            witness.append("INBOX", "", None, b"Subject: later\r\n\r\nlater\r\n")
        held = proxy.hold(rb"UID FETCH 601")
        # The catch-up of the new message is held: the answer is the index as it stands.
        [(name, got, _)] = (await email_get(http, auth, account)).json()["methodResponses"]
        assert (name, got["state"]) == ("Email/get", before)
        await held.reached.wait()
        # A writer reading back its own change waits for a run after it, whatever the wait.
        [first] = (await post(http, auth, ("Email/query", {"accountId": account}))).json()[
            "methodResponses"
        ][0][1]["ids"][:1]
        update = {first: {"keywords/$flagged": True}}
        writing = asyncio.create_task(
            post(http, auth, ("Email/set", {"accountId": account, "update": update}))
        )
        done, _ = await asyncio.wait({writing}, timeout=4 * float(WAIT))
        assert not done
        held.release()
        [(name, result, _)] = (await writing).json()["methodResponses"]
        assert name == "Email/set" and first in result["updated"], result
        await settle(index)
        assert await index.emails.count() == COUNT + 1
    assert await indexed_uids(index) == upstream_uids(dovecot, user)


async def test_a_writer_after_a_catch_up_that_ran_out_of_patience_asks_the_upstream_itself(
    dovecot: Dovecot, redis_url: str, store: Store, proxy: FaultProxy, user: str
) -> None:
    """A catch-up the request stopped waiting for did not bring the index up to date: a
    removal planned on it could take a message's last copy, so the Email/set after it in the
    same request waits for its own run."""
    auth = httpx.BasicAuth(user, dovecot.users[user])
    settings = gateway_settings(proxy.url, redis_url, sync_wait_seconds=float(WAIT))
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        account = await account_of(http, auth)
        index = AccountIndex.of(store.client, account)
        await email_get(http, auth, account)
        await settle(index)
        [first] = (await post(http, auth, ("Email/query", {"accountId": account}))).json()[
            "methodResponses"
        ][0][1]["ids"][:1]
        with dovecot.client(user) as witness:
            witness.append("INBOX", "", None, b"Subject: later\r\n\r\nlater\r\n")
        held = proxy.hold(rb"UID FETCH 601")
        get = ("Email/get", {"accountId": account, "ids": [first], "properties": ["id"]})
        update = {first: {"keywords/$seen": None}}
        writing = asyncio.create_task(
            post(http, auth, get, ("Email/set", {"accountId": account, "update": update}))
        )
        await held.reached.wait()
        done, _ = await asyncio.wait({writing}, timeout=4 * float(WAIT))
        assert not done
        held.release()
        responses = (await writing).json()["methodResponses"]
        assert [name for name, _, _ in responses] == ["Email/get", "Email/set"]
        assert first in responses[1][1]["updated"], responses


async def test_a_download_during_the_first_indexing_is_unavailable_for_now_not_missing(
    dovecot: Dovecot, redis_url: str, store: Store, proxy: FaultProxy, user: str
) -> None:
    """A client holding an email id from before an index reset asks for its blob while the
    indexing has not reached it: 503 with Retry-After (never 404, never 500), then the octets."""
    auth = httpx.BasicAuth(user, dovecot.users[user])
    settings = gateway_settings(proxy.url, redis_url, sync_wait_seconds=float(WAIT))
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        account = await account_of(http, auth)
        index = AccountIndex.of(store.client, account)
        await email_get(http, auth, account)
        await settle(index)
        subject = {"accountId": account, "filter": {"subject": "message 599"}}
        [email_id] = (await post(http, auth, ("Email/query", subject))).json()["methodResponses"][
            0
        ][1]["ids"]
        await store.client.hset(AccountKeys(account).meta, FORMAT_FIELD, "1")
        held = proxy.hold(SECOND_PAGE)
        path = f"/jmap/download/{account}/M{email_id}/m.eml?accept=message/rfc822"
        first = await http.get(path, auth=auth)
        await half_way(held, index)
        again = await http.get(path, auth=auth)
        for answer in (first, again):
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["retry-after"]) > 0
        held.release()
        await settle(index)
        done = await http.get(path, auth=auth)
        assert done.status_code == 200
        assert b"Subject: message 599" in done.content


async def test_a_catch_up_resets_an_index_of_another_format_and_indexes_it_again(
    dovecot: Dovecot, redis_url: str, store: Store, user: str
) -> None:
    auth = httpx.BasicAuth(user, dovecot.users[user])
    settings = gateway_settings(dovecot.url, redis_url, sync_wait_seconds=600.0)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        account = await account_of(http, auth)
        index = AccountIndex.of(store.client, account)
        first = (await email_get(http, auth, account)).json()["methodResponses"][0][1]
        ids = sorted(
            (await post(http, auth, ("Email/query", {"accountId": account, "limit": 1000}))).json()[
                "methodResponses"
            ][0][1]["ids"]
        )
        await store.client.hset(AccountKeys(account).meta, FORMAT_FIELD, "1")
        again = (await email_get(http, auth, account)).json()["methodResponses"][0][1]
        assert again["state"] != first["state"]
        assert (
            await store.client.hget(AccountKeys(account).meta, FORMAT_FIELD)
            == str(INDEX_FORMAT).encode()
        )
        assert await index.emails.indexed()
        query = await post(http, auth, ("Email/query", {"accountId": account, "limit": 1000}))
        assert sorted(query.json()["methodResponses"][0][1]["ids"]) == ids  # the same ids
        changes = await post(
            http, auth, ("Email/changes", {"accountId": account, "sinceState": first["state"]})
        )
        [(name, arguments, _)] = changes.json()["methodResponses"]
        assert (name, arguments["type"]) == ("error", "cannotCalculateChanges")
