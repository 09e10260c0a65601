"""The event-source resource (RFC 8620 7.3) of a real gateway in front of Dovecot and Redis,
read with httpx streaming and an SSE reader written from the WHATWG standard.

Ground truth comes from outside the stream: each type's /get state over the API, and what an
EventSource client does with the stream (the reader in tests/push/sse.py). Absences ("no ping",
"no initial event", "nothing for this type") are shown against keepalive comments, which the
tests make frequent: comments arriving prove the stream was open and writing meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from gateway.push import PUSH_TYPES
from tests.gateways import running_gateways
from tests.jmapclient import Jmap
from tests.push.eventsource_client import (
    ALL,
    PING_MIN,
    Gateway,
    assert_current,
    changed_of,
    create_draft,
    create_mailbox,
    states_via_get,
    stream,
    until_state,
    wait_for,
)
from tests.push.sse import Event
from tests.servers import Dovecot


async def test_initial_event_carries_every_current_state(
    sse_gateway: Gateway, sse_user: Jmap
) -> None:
    async with stream(sse_gateway.http, sse_user.auth) as s:
        headers = s.response.headers
        assert headers["content-type"] == "text/event-stream"
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in headers
        event = await s.next()
        await assert_current(changed_of(event, sse_user.account_id), sse_user)
        # RFC 8620 7.3: a state event is followed by an event id.
        assert event.has_id and event.last_id


async def test_change_through_the_api_arrives(sse_gateway: Gateway, sse_user: Jmap) -> None:
    """A change the gateway makes reaches the stream through the journal, no watcher needed."""
    async with stream(sse_gateway.http, sse_user.auth) as s:
        await s.next()
        email_state = await create_draft(sse_user, "pushed")
        event = await until_state(s, sse_user.account_id, "Email", email_state)
        truth = await states_via_get(sse_user)
        changed = changed_of(event, sse_user.account_id)
        assert changed["Email"] == truth["Email"]
        assert changed.keys() <= PUSH_TYPES
        mailbox_state = await create_mailbox(sse_user, "Pushed")
        await until_state(s, sse_user.account_id, "Mailbox", mailbox_state)


async def test_change_by_another_imap_session_arrives(
    dovecot: Dovecot, sse_gateway: Gateway, sse_user: Jmap
) -> None:
    """A message another IMAP client appends reaches the stream through the account's
    watcher, up to the Email state /get then answers."""
    async with stream(sse_gateway.http, sse_user.auth) as s:
        pushed = changed_of(await s.next(), sse_user.account_id)
        await asyncio.to_thread(append_elsewhere, dovecot, sse_user.username)
        before = pushed["Email"]
        while pushed["Email"] == before:
            pushed.update(changed_of(await s.next(timeout=15), sse_user.account_id))
        truth = await states_via_get(sse_user)
        while pushed["Email"] != truth["Email"]:
            pushed.update(changed_of(await s.next(timeout=15), sse_user.account_id))


def append_elsewhere(dovecot: Dovecot, user: str) -> None:
    client = dovecot.client(user)
    try:
        client.append("INBOX", None, None, b"Subject: from elsewhere\r\n\r\nHello.\r\n")
    finally:
        client.logout()


async def test_every_event_id_resumes_the_stream(
    sse_gateway: Gateway, sse_user: Jmap, quick_keepalive: None
) -> None:
    """The id after each state event stands for everything the stream sent: reconnecting with
    the latest id brings no initial event, as nothing changed since."""
    async with stream(sse_gateway.http, sse_user.auth) as s:
        await s.next()
        event = await until_state(
            s, sse_user.account_id, "Mailbox", await create_mailbox(sse_user, "Resume")
        )
    async with stream(
        sse_gateway.http, sse_user.auth, headers={"Last-Event-ID": event.last_id}
    ) as s:
        assert await s.comments(3) == []


async def test_last_event_id_equal_means_no_initial_event(
    sse_gateway: Gateway, sse_user: Jmap, quick_keepalive: None
) -> None:
    async with stream(sse_gateway.http, sse_user.auth) as s:
        first = await s.next()
    async with stream(
        sse_gateway.http, sse_user.auth, headers={"Last-Event-ID": first.last_id}
    ) as s:
        assert await s.comments(3) == []
        # The stream is live all the same.
        state = await create_mailbox(sse_user, "After")
        await until_state(s, sse_user.account_id, "Mailbox", state)


async def test_stale_last_event_id_brings_only_what_differs(
    sse_gateway: Gateway, sse_user: Jmap
) -> None:
    async with stream(sse_gateway.http, sse_user.auth) as s:
        first = await s.next()
    before = changed_of(first, sse_user.account_id)
    await create_mailbox(sse_user, "Missed")
    now = await states_via_get(sse_user)
    differing = {name: state for name, state in now.items() if before.get(name) != state}
    assert "Mailbox" in differing and len(differing) < len(now)
    async with stream(
        sse_gateway.http, sse_user.auth, headers={"Last-Event-ID": first.last_id}
    ) as s:
        assert changed_of(await s.next(), sse_user.account_id) == differing


@pytest.mark.parametrize("garbage", ["garbage", "e30", "!!!", "x" * 2000])
async def test_garbage_last_event_id_brings_every_state(
    sse_gateway: Gateway, sse_user: Jmap, garbage: str
) -> None:
    async with stream(sse_gateway.http, sse_user.auth, headers={"Last-Event-ID": garbage}) as s:
        await assert_current(changed_of(await s.next(), sse_user.account_id), sse_user)


async def test_closeafter_state_ends_after_the_initial_event(
    sse_gateway: Gateway, sse_user: Jmap
) -> None:
    """RFC 8620 7.3: with closeafter=state the response ends after a state event; the
    initial event is one."""
    async with stream(sse_gateway.http, sse_user.auth, {**ALL, "closeafter": "state"}) as s:
        events = await s.rest()
    assert len(events) == 1
    await assert_current(changed_of(events[0], sse_user.account_id), sse_user)


async def test_closeafter_state_with_a_current_id_waits_for_a_change(
    sse_gateway: Gateway, sse_user: Jmap, quick_keepalive: None
) -> None:
    """Long polling: a client that knows everything waits for the next change, gets it, and
    the response ends."""
    async with stream(sse_gateway.http, sse_user.auth, {**ALL, "closeafter": "state"}) as s:
        (first,) = await s.rest()
    query = {**ALL, "closeafter": "state"}
    async with stream(
        sse_gateway.http, sse_user.auth, query, {"Last-Event-ID": first.last_id}
    ) as s:
        assert await s.comments(2) == []
        await create_mailbox(sse_user, "Poll")
        events = await s.rest()
    # The first commit of the change ends the response (a Mailbox/set may commit twice).
    assert len(events) == 1
    before = changed_of(first, sse_user.account_id)["Mailbox"]
    after = changed_of(events[0], sse_user.account_id)["Mailbox"]
    # States are "<epoch>-<modseq>" (README, "State strings"): the same epoch, a later modseq.
    assert after.split("-")[0] == before.split("-")[0]
    assert int(after.split("-")[1]) > int(before.split("-")[1])


async def test_ping_is_raised_to_the_minimum(sse_gateway: Gateway, sse_user: Jmap) -> None:
    async with stream(sse_gateway.http, sse_user.auth, {**ALL, "ping": "1"}) as s:
        await s.next()
        ping = await s.next()
    assert ping.type == "ping"
    assert ping.json() == {"interval": PING_MIN}
    assert not ping.has_id


async def test_ping_zero_sends_no_ping_events(
    sse_gateway: Gateway, sse_user: Jmap, quick_keepalive: None
) -> None:
    async with stream(sse_gateway.http, sse_user.auth, {**ALL, "ping": "0"}) as s:
        await s.next()
        # Comments only (decision Q6): 7.3 forbids ping events with ping=0.
        assert await s.comments(5) == []


async def test_types_filter(sse_gateway: Gateway, sse_user: Jmap, quick_keepalive: None) -> None:
    async with stream(sse_gateway.http, sse_user.auth, {**ALL, "types": "Email,NotAType"}) as s:
        assert changed_of(await s.next(), sse_user.account_id) == {
            "Email": (await states_via_get(sse_user))["Email"]
        }
        await create_mailbox(sse_user, "Unwatched")
        # A Mailbox change is not for this stream.
        comments = s.parser.comments
        assert await s.comments(comments + 3) == []
        state = await create_draft(sse_user, "watched")
        assert changed_of(await s.next(), sse_user.account_id) == {"Email": state}


async def test_without_credentials_401(sse_gateway: Gateway) -> None:
    response = await sse_gateway.http.get("/jmap/eventsource/", params=ALL)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert "Basic" in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    "query",
    [
        {"types": "*", "closeafter": "no"},
        {"types": "*", "ping": "0"},
        {"closeafter": "no", "ping": "0"},
        {**ALL, "ping": "-5"},
        {**ALL, "ping": "soon"},
        {**ALL, "closeafter": "maybe"},
    ],
)
async def test_bad_variables_400(
    sse_gateway: Gateway, sse_user: Jmap, query: dict[str, str]
) -> None:
    response = await sse_gateway.http.get("/jmap/eventsource/", params=query, auth=sse_user.auth)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 400


async def test_drain_ends_the_stream_cleanly(sse_gateway: Gateway, sse_user: Jmap) -> None:
    async with stream(sse_gateway.http, sse_user.auth) as s:
        await s.next()
        sse_gateway.svc.push.drain()
        # A clean end of the chunked response (a cut one raises in httpx), nothing after.
        assert await s.rest() == []
        assert s.finished


async def test_a_client_that_goes_away_stops_listening(
    sse_gateway: Gateway, sse_user: Jmap
) -> None:
    async with stream(sse_gateway.http, sse_user.auth) as s:
        await s.next()
        assert sse_user.account_id in sse_gateway.svc.push.local_accounts()
    await wait_for(lambda: sse_user.account_id not in sse_gateway.svc.push.local_accounts())


async def test_sigterm_ends_the_stream_before_the_process_exits(
    dovecot: Dovecot, redis_url: str
) -> None:
    """A real process: SIGTERM drains the hub, the response ends cleanly (a cut chunked
    response raises in httpx) and only then does the process finish its shutdown."""
    name = dovecot.fresh_user()
    async with (
        running_gateways(1, imap_url=dovecot.url, redis_url=redis_url) as (process,),
        httpx.AsyncClient(base_url=process.base_url, timeout=30) as http,
    ):
        user = await Jmap(http, name, dovecot.users[name]).start()
        # An index built already: the watcher's first catch-up finds nothing to announce.
        await states_via_get(user)
        async with stream(http, user.auth) as s:
            assert (await s.next()).type == "state"
            process.sigterm()
            assert await s.rest(timeout=20) == []
            assert s.finished
        assert await process.exits_gracefully()


def resume(event: Event) -> dict[str, str]:
    """What an EventSource sends when it reconnects after ``event``."""
    return {"Last-Event-ID": event.last_id}


async def test_streams_are_counted_under_their_route(sse_gateway: Gateway, sse_user: Jmap) -> None:
    """The endpoint is reached outside FastAPI's layers, still under the access log."""
    async with stream(sse_gateway.http, sse_user.auth, {**ALL, "closeafter": "state"}) as s:
        await s.rest()
    await sse_gateway.http.get("/jmap/eventsource/", params=ALL)
    port = sse_gateway.svc.settings.metrics_port
    async with httpx.AsyncClient(timeout=30) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    for status in ("200", "401"):
        line = f'route="/jmap/eventsource/",status="{status}"'
        assert any(line in row and "_http_requests_total" in row for row in text.splitlines())


async def test_the_metrics_port_does_not_serve_streams(
    sse_gateway: Gateway, sse_user: Jmap
) -> None:
    port = sse_gateway.svc.settings.metrics_port
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(
            f"http://127.0.0.1:{port}/jmap/eventsource/", params=ALL, auth=sse_user.auth
        )
    assert response.status_code == 404


async def test_a_stream_over_the_account_limit_is_refused(
    sse_gateway: Gateway, sse_user: Jmap
) -> None:
    limit = sse_gateway.svc.push.max_per_account
    async with contextlib.AsyncExitStack() as streams:
        for _ in range(limit):
            await streams.enter_async_context(stream(sse_gateway.http, sse_user.auth))
        response = await sse_gateway.http.get("/jmap/eventsource/", params=ALL, auth=sse_user.auth)
    assert response.status_code == 429
    assert response.json()["limit"] == "maxPushConnections"
    assert "retry-after" in response.headers


async def test_no_stream_opens_while_draining(sse_gateway: Gateway, sse_user: Jmap) -> None:
    sse_gateway.svc.push.drain()
    response = await sse_gateway.http.get("/jmap/eventsource/", params=ALL, auth=sse_user.auth)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"


async def test_head_has_the_streams_headers_and_no_body(
    sse_gateway: Gateway, sse_user: Jmap
) -> None:
    response = await sse_gateway.http.head("/jmap/eventsource/", params=ALL, auth=sse_user.auth)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.content == b""
