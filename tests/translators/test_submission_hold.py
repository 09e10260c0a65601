"""Delayed send through a gateway (RFC 8621 7, RFC 4865 HOLDFOR/HOLDUNTIL): a held submission
is pending, sent once when due and then final; a canceled one is never sent; a claimed or sent
one cannot be canceled; beyond maxDelayedSend or without a way to send later it is refused;
with a FUTURERELEASE server the hold is handed over at once and the submission is final.

What was sent is counted at an SMTP sink of each test's own (tests/smtp_servers.py); nothing
measures time.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.cache.store import Store
from gateway.config import Settings
from tests.conftest import SERVICE_USER, gateway_settings, running_gateway, serving
from tests.jmapclient import Jmap
from tests.servers import Dovecot, make_data_dir
from tests.smtp.test_postfix import delivered
from tests.smtp_servers import Postfix, Sink
from tests.translators.submitting import (
    DOMAIN,
    draft_id,
    held_usage,
    identity_id,
    max_delayed_send,
    request,
    settled,
    submission,
    submission_extensions,
    submit_later,
)

SHORT_MAX = 3600


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A sink of this test's own: what arrived is counted per test."""
    yield from serving(Sink(make_data_dir("jg-sink-"), slow_seconds=1.5))


@pytest.fixture
def future_sink() -> Iterator[Sink]:
    """A sink offering RFC 4865 FUTURERELEASE (up to a day)."""
    yield from serving(
        Sink(make_data_dir("jg-sink-"), future_release=(86400, "2099-01-01T00:00:00Z"))
    )


async def user_of(dovecot: Dovecot, url: str) -> AsyncIterator[Jmap]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        name = dovecot.fresh_user()
        yield await Jmap(http, name, dovecot.users[name]).start()


@pytest.fixture
def settings(dovecot: Dovecot, redis_url: str, sink: Sink) -> Settings:
    """A gateway sending through a relay that trusts it (GATEWAY_SMTP_AUTH=none): it can send
    without the user, so it holds submissions itself."""
    return gateway_settings(
        dovecot.url,
        redis_url,
        smtp_url=sink.url,
        smtp_auth="none",
        mail_domain=DOMAIN,
        max_delayed_send_seconds=SHORT_MAX,
    )


@pytest.fixture
async def user(dovecot: Dovecot, settings: Settings) -> AsyncIterator[Jmap]:
    async with running_gateway(settings) as url:
        async for jmap in user_of(dovecot, url):
            yield jmap


def created(response: list[Any]) -> dict[str, Any]:
    assert response[0] == "EmailSubmission/set", response
    assert response[1]["created"], response
    return response[1]["created"]["s"]  # type: ignore[no-any-return]


def refused(response: list[Any]) -> dict[str, Any]:
    assert response[0] == "EmailSubmission/set", response
    assert not response[1]["created"], response
    return response[1]["notCreated"]["s"]  # type: ignore[no-any-return]


async def cancel(user: Jmap, submission_id: str) -> list[Any]:
    (response,) = await request(
        user, ("EmailSubmission/set", {"update": {submission_id: {"undoStatus": "canceled"}}})
    )
    return response


async def delayed_sends(settings: Settings, outcome: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{settings.metrics_port}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "jmap_gateway_delayed_sends_total" and sample.labels == {
                "outcome": outcome
            }:
                return float(sample.value)
    return 0.0


async def test_a_held_submission_is_pending_then_sent_once(
    user: Jmap, sink: Sink, settings: Settings
) -> None:
    assert await max_delayed_send(user) == SHORT_MAX
    response = await submit_later(user, "in a few seconds", {"HOLDFOR": "3"})
    held = created(response)
    pending = await submission(user, held["id"])
    assert pending["undoStatus"] == "pending"
    assert pending["deliveryStatus"] is None
    assert list(sink.received) == []  # not before it is due
    done = await settled(user, held["id"])
    assert done["undoStatus"] == "final"
    assert done["sendAt"] == pending["sendAt"]
    assert done["deliveryStatus"]["bob@example.org"]["delivered"] == "queued"
    (received,) = list(sink.received)
    # The gateway's own hold: HOLDFOR is not passed on to a server without FUTURERELEASE.
    assert not any(p.upper().startswith(("HOLDFOR", "HOLDUNTIL")) for p in received.mail_parameters)
    assert b"Subject: in a few seconds" in received.content
    await asyncio.sleep(0.3)
    assert len(list(sink.received)) == 1
    for _ in range(200):  # counted once the sender finished with it, just after the record
        if await delayed_sends(settings, "sent"):
            break
        await asyncio.sleep(0.02)
    assert await delayed_sends(settings, "sent") == 1
    answer = await cancel(user, held["id"])
    assert answer[1]["notUpdated"][held["id"]]["type"] == "cannotUnsend"


async def test_a_canceled_submission_is_never_sent(user: Jmap, sink: Sink, redis_url: str) -> None:
    response = await submit_later(user, "never", {"HOLDFOR": "4"})
    held = created(response)
    answer = await cancel(user, held["id"])
    assert answer[1]["updated"] == {held["id"]: None}, answer
    assert (await submission(user, held["id"]))["undoStatus"] == "canceled"
    store = Store.from_url(redis_url)
    try:
        assert await held_usage(store.client, user.account_id) == (0, 0)
    finally:
        await store.close()
    # Past its due time, and then some: nothing arrives.
    later = await submit_later(user, "after", {"HOLDFOR": "5"})
    await settled(user, created(later)["id"])
    assert [b"Subject: after" in r.content for r in list(sink.received)] == [True]


async def test_a_future_send_at_holds_like_holduntil(user: Jmap, sink: Sink) -> None:
    """sendAt is server-set (RFC 8621 7), but a client that gives one on create asks for the
    send at that time: it is held like HOLDUNTIL, and its sendAt is the one asked for."""
    when = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    create = {
        "identityId": await identity_id(user),
        "emailId": await draft_id(user, "at a time", "bob@example.org"),
        "sendAt": when,
    }
    (response,) = await request(user, ("EmailSubmission/set", {"create": {"s": create}}))
    held = created(response)
    assert held["sendAt"] == when
    assert held["undoStatus"] == "pending"
    answer = await cancel(user, held["id"])
    assert answer[1]["updated"] == {held["id"]: None}, answer
    assert list(sink.received) == []


@pytest.mark.parametrize(
    ("send_at", "parameters", "properties"),
    [
        ("tomorrow", None, ["sendAt"]),
        ("2099-01-01T00:00:00Z", {"HOLDFOR": "60"}, ["envelope", "sendAt"]),
    ],
)
async def test_a_send_at_that_cannot_be_honoured_is_refused(
    user: Jmap, sink: Sink, send_at: str, parameters: dict[str, str] | None, properties: list[str]
) -> None:
    create: dict[str, Any] = {
        "identityId": await identity_id(user),
        "emailId": await draft_id(user, "bad time", "bob@example.org"),
        "sendAt": send_at,
    }
    if parameters is not None:
        create["envelope"] = {
            "mailFrom": {"email": f"{user.username}@{DOMAIN}", "parameters": parameters},
            "rcptTo": [{"email": "bob@example.org", "parameters": None}],
        }
    (response,) = await request(user, ("EmailSubmission/set", {"create": {"s": create}}))
    error = refused(response)
    assert error["type"] == "invalidProperties"
    assert error["properties"] == properties
    assert list(sink.received) == []


async def test_a_submission_being_sent_cannot_be_canceled(
    user: Jmap, sink: Sink, redis_url: str
) -> None:
    response = await submit_later(user, "slow", {"HOLDFOR": "1"}, to="slow-bob@example.org")
    held = created(response)
    # Wait until a sender claimed it (cache.schedule's entry has a lease token); the slow RCPT
    # keeps the transaction open meanwhile.
    store = Store.from_url(redis_url)
    try:
        for _ in range(500):
            raw = await store.client.hget(
                "jg:{schedule}:entries", f"{user.account_id}/{held['id']}"
            )
            if raw is not None and json.loads(raw)["t"]:
                break
            await asyncio.sleep(0.01)
    finally:
        await store.close()
    answer = await cancel(user, held["id"])
    assert answer[1]["notUpdated"][held["id"]]["type"] == "cannotUnsend", answer
    done = await settled(user, held["id"])
    assert done["undoStatus"] == "final"
    assert len(list(sink.received)) == 1


async def test_holdings_beyond_the_maximum_or_malformed_are_refused(user: Jmap, sink: Sink) -> None:
    too_far = refused(await submit_later(user, "far", {"HOLDFOR": str(SHORT_MAX + 60)}))
    assert too_far["type"] == "invalidProperties"
    assert too_far["properties"] == ["envelope"]
    until = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert refused(await submit_later(user, "far", {"HOLDUNTIL": until}))["type"] == (
        "invalidProperties"
    )
    # A moment already past is sent now.
    past = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sent = created(await submit_later(user, "past", {"HOLDUNTIL": past}))
    assert sent["undoStatus"] == "final"
    assert len(list(sink.received)) == 1


async def test_without_a_way_to_send_later_delayed_send_is_off(
    dovecot: Dovecot, redis_url: str, sink: Sink
) -> None:
    # GATEWAY_SMTP_AUTH=user and no service account: only the user's own login can send.
    settings = gateway_settings(
        dovecot.url, redis_url, smtp_url=sink.url, smtp_auth="user", mail_domain=DOMAIN
    )
    async with running_gateway(settings) as url:
        async for user in user_of(dovecot, url):
            assert await max_delayed_send(user) == 0
            error = refused(await submit_later(user, "later", {"HOLDFOR": "60"}))
            assert error["type"] == "forbiddenToSend"
    assert list(sink.received) == []


async def test_a_future_release_server_holds_it_and_the_submission_is_final(
    dovecot: Dovecot, redis_url: str, future_sink: Sink
) -> None:
    settings = gateway_settings(
        dovecot.url, redis_url, smtp_url=future_sink.url, smtp_auth="none", mail_domain=DOMAIN
    )
    async with running_gateway(settings) as url:
        async for user in user_of(dovecot, url):
            for _ in range(200):  # the EHLO answer is learnt at start-up or just after
                if "FUTURERELEASE" in await submission_extensions(user):
                    break
                await asyncio.sleep(0.02)
            assert (await submission_extensions(user))["FUTURERELEASE"][0] == "86400"
            # Within the server's interval it holds the message; beyond, the gateway would.
            assert await max_delayed_send(user) == 604800
            before = datetime.now(UTC)
            held = created(await submit_later(user, "server side", {"HOLDFOR": "600"}))
            # RFC 8621 7: final (the gateway cannot recall it) and sendAt the release time.
            assert held["undoStatus"] == "final"
            release = datetime.strptime(held["sendAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            assert timedelta(seconds=540) <= release - before <= timedelta(seconds=660)
            (received,) = list(future_sink.received)  # handed over at once
            assert f"HOLDUNTIL={held['sendAt']}" in received.mail_parameters
            record = await submission(user, held["id"])
            assert record["deliveryStatus"]["bob@example.org"]["delivered"] == "queued"
            answer = await cancel(user, held["id"])
            assert answer[1]["notUpdated"][held["id"]]["type"] == "cannotUnsend"
    store = Store.from_url(redis_url)
    try:  # no local hold: nothing scheduled, no octets kept
        assert await store.client.hlen("jg:{schedule}:entries") == 0
        assert await held_usage(store.client, user.account_id) == (0, 0)
    finally:
        await store.close()


async def test_a_held_submission_goes_through_postfix_as_the_user_by_a_service_account(
    sending_dovecot: Dovecot, postfix: Postfix, redis_url: str
) -> None:
    """The realistic mode: Postfix with Dovecot SASL, the gateway's service account acting
    for the user (AUTH PLAIN with an authzid), delivery into bob's INBOX over LMTP."""
    settings = gateway_settings(
        sending_dovecot.url,
        redis_url,
        smtp_url=postfix.url,
        smtp_service_username=SERVICE_USER[0],
        smtp_service_password=SERVICE_USER[1],
        mail_domain=DOMAIN,
    )
    subject = f"held through postfix {secrets.token_hex(4)}"
    async with (
        running_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        user = await Jmap(http, "alice", sending_dovecot.users["alice"]).start()
        held = created(await submit_later(user, subject, {"HOLDFOR": "1"}, to="bob@example.com"))
        assert held["undoStatus"] == "pending"
        done = await settled(user, held["id"])
    assert done["undoStatus"] == "final"
    assert done["deliveryStatus"]["bob@example.com"]["delivered"] == "queued"
    (raw,) = await asyncio.to_thread(delivered, sending_dovecot, "bob", subject)
    assert f"Subject: {subject}".encode() in raw
    # Postfix saw alice as the login (the service account's authorization identity).
    assert "sasl_method=PLAIN, sasl_username=alice" in postfix.log_text()


async def test_a_hold_past_the_servers_latest_release_is_kept_by_the_gateway(
    dovecot: Dovecot, redis_url: str, tmp_path: Path
) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=120)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sink = Sink(tmp_path / "sink", future_release=(86400, soon))
    sink.start()
    settings = gateway_settings(
        dovecot.url, redis_url, smtp_url=sink.url, smtp_auth="none", mail_domain=DOMAIN
    )
    try:
        async with running_gateway(settings) as url:
            async for user in user_of(dovecot, url):
                for _ in range(200):
                    if "FUTURERELEASE" in await submission_extensions(user):
                        break
                    await asyncio.sleep(0.02)
                # RFC 4865 3: the server releases nothing after `soon`; 10 minutes is later.
                held = created(await submit_later(user, "too late for it", {"HOLDFOR": "600"}))
                assert held["undoStatus"] == "pending"
                assert list(sink.received) == []
                answer = await cancel(user, held["id"])
                assert answer[1]["updated"] == {held["id"]: None}, answer
    finally:
        sink.stop()
