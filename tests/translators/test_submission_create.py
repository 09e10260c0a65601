"""EmailSubmission/set create end to end against a recording SMTP server: what is sent (the
envelope 7.5 makes or the client's, the stored octets minus Bcc), the record, the implicit
Email/set, and the refusals checked before anything is sent."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import shutil
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from redis.asyncio import Redis

from gateway.cache import submissions
from tests.conftest import running_gateway, sending_settings
from tests.jmapclient import Jmap
from tests.servers import LOOPBACK, Dovecot, free_port, make_data_dir, refused_port
from tests.smtp_servers import Sink
from tests.translators.submitting import (
    DOMAIN,
    address,
    draft,
    identity_id,
    request,
    sent_by,
    submit,
)


@pytest.fixture
async def sending(dovecot: Dovecot, redis_url: str, smtp_sink: Sink) -> AsyncIterator[str]:
    """A gateway sending to the shared sink (faults chosen by address, tests.smtp_servers)."""
    settings = sending_settings(
        dovecot,
        smtp_sink.url,
        redis_url,
        mail_domain=DOMAIN,
        identity_addresses="{address},{local}+*@{domain}",
        max_recipients=4,
    )
    async with running_gateway(settings) as url:
        yield url


@pytest.fixture
async def user(dovecot: Dovecot, sending: str) -> AsyncIterator[Jmap]:
    async with httpx.AsyncClient(base_url=sending, timeout=30) as http:
        name = dovecot.fresh_user()
        yield await Jmap(http, name, dovecot.users[name]).start()


def stored(dovecot: Dovecot, user: str, folder: str) -> list[tuple[bytes, bytes]]:
    """(flags, octets) of every message in ``folder``, by a plain IMAP session."""
    conn = dovecot.client(user)
    try:
        _, (count,) = conn.select(folder, readonly=True)
        if count == b"0":
            return []
        _, data = conn.fetch("1:*", "(FLAGS BODY.PEEK[])")
        found = []
        for item in data:
            if isinstance(item, tuple):
                found.append((item[0], item[1]))
        return found
    finally:
        conn.logout()


def not_created(responses: list[list[Any]]) -> dict[str, Any]:
    response = responses[1]
    assert response[0] == "EmailSubmission/set", response
    assert response[1]["created"] is None, response
    return response[1]["notCreated"]["sub"]  # type: ignore[no-any-return]


async def test_a_draft_is_sent_bcc_removed_and_moved_to_sent(
    user: Jmap, smtp_sink: Sink, dovecot: Dovecot
) -> None:
    mailboxes = await user.mailboxes()
    drafts, sent = mailboxes["Drafts"]["id"], mailboxes["Sent"]["id"]
    on_success = {
        "#sub": {"keywords/$draft": None, f"mailboxIds/{drafts}": None, f"mailboxIds/{sent}": True}
    }
    responses = await submit(
        user,
        {
            "to": ["bob@example.com"],
            "cc": ["Bob@example.com", "dave@example.org"],
            "bcc": ["carol@example.com"],
        },
        onSuccessUpdateEmail=on_success,
    )
    assert [r[0] for r in responses] == ["Email/set", "EmailSubmission/set", "Email/set"]
    created = responses[1][1]["created"]["sub"]
    email_id = responses[0][1]["created"]["draft"]["id"]
    assert created["undoStatus"] == "final"
    # RFC 8621 7.5: the envelope made from the header fields, deduplicated.
    recipients = ["bob@example.com", "dave@example.org", "carol@example.com"]
    assert created["envelope"] == {
        "mailFrom": {"email": address(user), "parameters": None},
        "rcptTo": [{"email": r, "parameters": None} for r in recipients],
    }
    assert {a: s["delivered"] for a, s in created["deliveryStatus"].items()} == dict.fromkeys(
        recipients, "queued"
    )
    assert created["deliveryStatus"]["bob@example.com"]["smtpReply"] == "250 2.1.5 Ok"
    # The implicit Email/set moved the draft to Sent and dropped $draft.
    assert responses[2][1]["updated"] == {email_id: None}
    assert stored(dovecot, user.username, "Drafts") == []
    ((flags, octets),) = stored(dovecot, user.username, "Sent")
    assert b"\\Draft" not in flags
    # Sent once, to the envelope's recipients, the stored octets without the Bcc field.
    (message,) = sent_by(smtp_sink, user)
    assert message.recipients == tuple(recipients)
    # SIZE advertised, the message 7-bit, DSN advertised: ENVID is the submission id.
    assert message.mail_parameters == (f"SIZE={len(message.content)}", f"ENVID={created['id']}")
    assert b"Bcc:" in octets
    assert message.content == b"".join(
        line for line in octets.splitlines(keepends=True) if not line.startswith(b"Bcc:")
    )
    parsed = email.message_from_bytes(message.content, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert parsed["To"] == "bob@example.com"
    # The record reads back with /get.
    (got,) = await request(user, ("EmailSubmission/get", {"ids": [created["id"]]}))
    (record,) = got[1]["list"]
    assert record["emailId"] == email_id
    assert record["threadId"] == created["threadId"]
    assert record["dsnBlobIds"] == [] and record["mdnBlobIds"] == []


async def test_mail_from_is_the_sender_field_then_from(user: Jmap, smtp_sink: Sink) -> None:
    own = address(user)
    secretary = f"{user.username}+sec@{DOMAIN}"
    responses = await submit(user, {"to": ["bob@example.com"], "sender": [{"email": secretary}]})
    assert responses[1][1]["created"]["sub"]["envelope"]["mailFrom"]["email"] == secretary
    # A Sender the identity does not allow: the Identity's email instead (7.5 MUST).
    responses = await submit(
        user, {"to": ["bob@example.com"], "sender": [{"email": "boss@example.com"}]}
    )
    assert responses[1][1]["created"]["sub"]["envelope"]["mailFrom"]["email"] == own
    assert [m.mail_from for m in smtp_sink.received if m.mail_from in (secretary, own)] == [
        secretary,
        own,
    ]


async def test_a_given_envelope_is_used_as_given(user: Jmap, smtp_sink: Sink) -> None:
    envelope = {
        "mailFrom": {"email": address(user), "parameters": None},
        "rcptTo": [{"email": "elsewhere@example.org", "parameters": None}],
    }
    responses = await submit(user, {"to": ["bob@example.com"]}, {"envelope": envelope})
    created = responses[1][1]["created"]["sub"]
    assert "envelope" not in created
    (message,) = sent_by(smtp_sink, user)
    assert message.recipients == ("elsewhere@example.org",)
    (got,) = await request(user, ("EmailSubmission/get", {"ids": [created["id"]]}))
    assert got[1]["list"][0]["envelope"] == envelope


async def test_one_recipient_refused_the_others_queued(user: Jmap, smtp_sink: Sink) -> None:
    responses = await submit(
        user, {"to": ["bob@example.com", "reject-nobody@example.com", "carol@example.com"]}
    )
    status = responses[1][1]["created"]["sub"]["deliveryStatus"]
    assert status["reject-nobody@example.com"] == {
        "smtpReply": "550 5.1.1 <reject-nobody@example.com>: Recipient address rejected: "
        "unknown user",
        "delivered": "no",
        "displayed": "unknown",
    }
    assert status["bob@example.com"]["delivered"] == "queued"
    (message,) = sent_by(smtp_sink, user)
    assert message.recipients == ("bob@example.com", "carol@example.com")


async def test_every_recipient_refused_is_invalid_recipients(user: Jmap, smtp_sink: Sink) -> None:
    refused = ["reject-nobody@example.com", "reject-ghost@example.com"]
    error = not_created(await submit(user, {"to": refused}))
    assert error["type"] == "invalidRecipients"
    assert error["invalidRecipients"] == sorted(refused)
    assert "Recipient address rejected: unknown user" in error["description"]
    assert sent_by(smtp_sink, user) == []


@pytest.mark.parametrize(
    ("fields", "submission", "expected", "extra"),
    [
        ({}, {}, "noRecipients", {}),
        (
            {
                "to": [
                    "a@example.org",
                    "b@example.org",
                    "c@example.org",
                    "d@example.org",
                    "e@example.org",
                ]
            },
            {},
            "tooManyRecipients",
            {"maxRecipients": 4},
        ),
        (
            {"to": ["bob@example.com"], "from": [{"email": "boss@example.com"}]},
            {},
            "forbiddenFrom",
            {},
        ),
        (
            {
                "to": ["bob@example.com"],
                "from": [{"email": "{own}"}, {"email": "{own}"}],
            },
            {},
            None,
            {},
        ),
        (
            {"to": ["bob@example.com"]},
            {
                "envelope": {
                    "mailFrom": {"email": "boss@example.com"},
                    "rcptTo": [{"email": "b@x.org"}],
                }
            },
            "forbiddenMailFrom",
            {},
        ),
        (
            {"to": ["bob@example.com"]},
            {"envelope": {"mailFrom": {"email": ""}, "rcptTo": [{"email": "nobody"}]}},
            "invalidRecipients",
            {"invalidRecipients": ["nobody"]},
        ),
        (
            {"to": ["bob@example.com"]},
            {"identityId": "Inothere"},
            "invalidProperties",
            {"properties": ["identityId"]},
        ),
        (
            {"to": ["bob@example.com"]},
            {"emailId": "Mnothere"},
            "invalidProperties",
            {"properties": ["emailId"]},
        ),
        (
            {"to": ["bob@example.com"]},
            {"emailId": "#nothere"},
            "invalidProperties",
            {"properties": ["emailId"]},
        ),
        (
            {"to": ["bob@example.com"]},
            {"undoStatus": "final"},
            "invalidProperties",
            {"properties": ["undoStatus"]},
        ),
        (
            {"to": ["bob@example.com"]},
            {
                "envelope": {
                    "mailFrom": {"email": "", "parameters": {"HOLDFOR": "600"}},
                    "rcptTo": [{"email": "b@x.org"}],
                }
            },
            "forbiddenToSend",
            {},
        ),
    ],
)
async def test_refused_before_sending(
    user: Jmap,
    smtp_sink: Sink,
    fields: dict[str, Any],
    submission: dict[str, Any],
    expected: str | None,
    extra: dict[str, Any],
) -> None:
    if "from" in fields:
        fields["from"] = [{"email": a["email"].format(own=address(user))} for a in fields["from"]]
    error = not_created(await submit(user, fields, submission))
    if expected is None:
        # Two From addresses (the draft is stored as given; 7.5 SHOULD reject it).
        assert error["type"] == "invalidEmail"
    else:
        assert error["type"] == expected, error
        assert {k: error[k] for k in extra} == extra
    assert sent_by(smtp_sink, user) == []
    (got,) = await request(user, ("EmailSubmission/get", {"ids": None}))
    assert got[1]["list"] == []


async def test_another_users_email_is_not_found(
    user: Jmap, smtp_sink: Sink, dovecot: Dovecot, sending: str
) -> None:
    async with httpx.AsyncClient(base_url=sending, timeout=30) as http:
        name = dovecot.fresh_user()
        other = await Jmap(http, name, dovecot.users[name]).start()
        mailboxes = await other.mailboxes()
        (made,) = await request(
            other,
            ("Email/set", {"create": {"d": draft(other, mailboxes, to=["bob@example.com"])}}),
        )
        theirs = made[1]["created"]["d"]["id"]
    (response,) = await request(
        user,
        (
            "EmailSubmission/set",
            {"create": {"sub": {"identityId": await identity_id(user), "emailId": theirs}}},
        ),
    )
    assert response[1]["notCreated"]["sub"]["properties"] == ["emailId"]
    assert sent_by(smtp_sink, user) == []


async def test_a_451_after_the_dot_sends_nothing_and_leaves_no_record(
    user: Jmap, smtp_sink: Sink
) -> None:
    error = not_created(await submit(user, {"to": ["data-tempfail-bob@example.com"]}))
    assert error["type"] == "serverFail"
    assert "nothing was sent" in error["description"]
    assert '"451 4.3.0 Error: try again later"' in error["description"]
    assert sent_by(smtp_sink, user) == []
    (got,) = await request(user, ("EmailSubmission/get", {"ids": None}))
    assert got[1]["list"] == []


async def test_update_cancels_nothing_final_and_destroy_forgets(
    user: Jmap, smtp_sink: Sink
) -> None:
    responses = await submit(user, {"to": ["bob@example.com"]})
    submission_id = responses[1][1]["created"]["sub"]["id"]
    email_id = responses[0][1]["created"]["draft"]["id"]
    (updated,) = await request(
        user,
        (
            "EmailSubmission/set",
            {
                "update": {
                    submission_id: {"undoStatus": "canceled"},
                    "Snothere": {"undoStatus": "canceled"},
                }
            },
        ),
    )
    assert updated[1]["notUpdated"][submission_id]["type"] == "cannotUnsend"
    assert updated[1]["notUpdated"]["Snothere"]["type"] == "notFound"
    (patched,) = await request(
        user, ("EmailSubmission/set", {"update": {submission_id: {"emailId": "x"}}})
    )
    assert patched[1]["notUpdated"][submission_id]["type"] == "invalidProperties"
    destroyed = await request(
        user,
        (
            "EmailSubmission/set",
            {"destroy": [submission_id], "onSuccessDestroyEmail": [submission_id]},
        ),
    )
    assert destroyed[0][1]["destroyed"] == [submission_id]
    # The implicit Email/set destroyed the sent Email; the message stays sent.
    assert destroyed[1][0] == "Email/set"
    assert destroyed[1][1]["destroyed"] == [email_id]
    assert len(sent_by(smtp_sink, user)) == 1


async def test_if_in_state(user: Jmap, smtp_sink: Sink) -> None:
    (response,) = await request(user, ("EmailSubmission/set", {"ifInState": "nope", "create": {}}))
    assert response == [
        "error",
        {"type": "stateMismatch", "description": response[1]["description"]},
        "c0",
    ]


async def test_the_server_down_is_retryable_and_a_retry_sends_once(
    dovecot: Dovecot, redis_url: str
) -> None:
    down = contextlib.ExitStack()
    port = down.enter_context(refused_port())
    settings = sending_settings(dovecot, f"smtp://127.0.0.1:{port}", redis_url, mail_domain=DOMAIN)
    async with (
        running_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        name = dovecot.fresh_user()
        user = await Jmap(http, name, dovecot.users[name]).start()
        responses = await submit(user, {"to": ["bob@example.com"]})
        error = not_created(responses)
        assert error["type"] == "serverFail"
        assert "nothing was sent" in error["description"]
        (got,) = await request(user, ("EmailSubmission/get", {"ids": None}))
        assert got[1]["list"] == []
        # The server comes back on its port: the same Email submitted again goes once.
        down.close()
        sink = Sink(make_data_dir("jg-sink-"), port=port)
        sink.start()
        try:
            email_id = responses[0][1]["created"]["draft"]["id"]
            create = {"identityId": await identity_id(user), "emailId": email_id}
            (again,) = await request(user, ("EmailSubmission/set", {"create": {"a": create}}))
        finally:
            sink.stop()
            shutil.rmtree(sink.root, ignore_errors=True)
    assert again[1]["created"]["a"]["undoStatus"] == "final"
    assert len(sink.received) == 1


async def test_a_reply_lost_after_the_dot_is_recorded_sent_and_not_retryable(
    user: Jmap, smtp_sink: Sink
) -> None:
    responses = await submit(user, {"to": ["cut-after-dot-bob@example.com", "carol@example.com"]})
    created = responses[1][1]["created"]["sub"]
    # RFC 1047: it may have been delivered: final, every recipient unknown, never resent.
    assert created["undoStatus"] == "final"
    for status in created["deliveryStatus"].values():
        assert status["delivered"] == "unknown"
        assert "lost" in status["smtpReply"]
    assert len(sent_by(smtp_sink, user)) == 1


async def test_a_message_over_the_servers_size_is_too_large(
    dovecot: Dovecot, redis_url: str
) -> None:
    sink = Sink(make_data_dir("jg-sink-"), size=600)
    sink.start()
    try:
        settings = sending_settings(dovecot, sink.url, redis_url, mail_domain=DOMAIN)
        async with (
            running_gateway(settings) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            name = dovecot.fresh_user()
            user = await Jmap(http, name, dovecot.users[name]).start()
            small = await submit(user, {"to": ["bob@example.com"]})
            large = await submit(
                user,
                {"to": ["bob@example.com"], "bodyValues": {"1": {"value": "x" * 700}}},
            )
    finally:
        sink.stop()
        shutil.rmtree(sink.root, ignore_errors=True)
    assert small[1][1]["created"]["sub"]["undoStatus"] == "final"
    error = not_created(large)
    assert error["type"] == "tooLarge"
    assert error["maxSize"] == 600
    assert len(sink.received) == 1


async def test_sent_but_not_recorded_is_still_reported_sent(
    user: Jmap,
    smtp_sink: Sink,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An account full of pending submissions (the store's bound, lowered to one here) takes
    # no record more; the message went out all the same, and an error would invite a resend.
    monkeypatch.setattr(submissions, "MAX_SUBMISSIONS", 1)
    client = Redis.from_url(redis_url)
    try:
        store = submissions.SubmissionStore.of(client, user.account_id)
        pending = submissions.SubmissionRecord(
            await store.new_id(), "I1", "M1", "T1", {}, "2026-12-07T10:00:00Z", "pending", None
        )
        await store.create(pending)
        responses = await submit(user, {"to": ["bob@example.com"]})
    finally:
        await client.aclose()
    created = responses[1][1]["created"]["sub"]
    assert created["undoStatus"] == "final"
    assert created["deliveryStatus"]["bob@example.com"]["delivered"] == "queued"
    assert len(sent_by(smtp_sink, user)) == 1
    assert f"submission {created['id']} was sent but could not be recorded" in caplog.text


async def test_dsn_and_utf8_parameters_go_as_the_server_advertises_them(
    user: Jmap, smtp_sink: Sink
) -> None:
    envelope = {
        "mailFrom": {"email": address(user), "parameters": {"RET": "HDRS", "ENVID": "mine"}},
        "rcptTo": [
            {
                "email": "bob@example.com",
                "parameters": {"NOTIFY": "SUCCESS,FAILURE", "ORCPT": "rfc822;bob+x@example.com"},
            },
            {"email": "jörg@bücher.example", "parameters": None},
        ],
    }
    responses = await submit(user, {"to": ["bob@example.com"]}, {"envelope": envelope})
    created = responses[1][1]["created"]["sub"]
    (message,) = sent_by(smtp_sink, user)
    # RFC 8621 7: the server's ENVID (the submission id) replaces the client's; SMTPUTF8 for
    # the non-ASCII address (RFC 6531); ORCPT's address as xtext (RFC 3461 4.2).
    assert message.mail_parameters == (
        "RET=HDRS",
        f"SIZE={len(message.content)}",
        "SMTPUTF8",
        f"ENVID={created['id']}",
    )
    assert message.rcpt_parameters == {
        "bob@example.com": ("NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob+2Bx@example.com"),
        "jörg@bücher.example": (),
    }
    # What the client gave is what the record shows.
    (got,) = await request(user, ("EmailSubmission/get", {"ids": [created["id"]]}))
    assert got[1]["list"][0]["envelope"] == envelope


class _HeldData:
    """An SMTP server that holds each message's reply until the test lets it go."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.arrived.set()
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        return "250 2.0.0 Ok: queued"


async def test_no_imap_connection_is_held_while_smtp_talks(
    dovecot: Dovecot, redis_url: str
) -> None:
    # One IMAP connection per user: a send that kept it would leave none for the Email/query.
    held = _HeldData()
    port = free_port()
    controller = Controller(held, hostname=LOOPBACK, port=port)
    controller.start()
    try:
        settings = sending_settings(
            dovecot,
            f"smtp://{LOOPBACK}:{port}",
            redis_url,
            smtp_auth="none",
            mail_domain=DOMAIN,
            pool_max_per_user=1,
            pool_wait_timeout=2,
        )
        async with (
            running_gateway(settings) as url,
            httpx.AsyncClient(base_url=url, timeout=60) as http,
        ):
            name = dovecot.fresh_user()
            user = await Jmap(http, name, dovecot.users[name]).start()
            sending = asyncio.create_task(submit(user, {"to": ["bob@example.com"]}))
            assert await asyncio.to_thread(held.arrived.wait, 30)
            # The message is with the SMTP server, its reply held: the user's IMAP work goes on.
            (answer,) = await request(user, ("Email/query", {}))
            assert answer[0] == "Email/query"
            assert len(answer[1]["ids"]) == 1
            held.release.set()
            responses = await sending
    finally:
        held.release.set()
        controller.stop()
    assert responses[1][1]["created"]["sub"]["undoStatus"] == "final"


async def test_an_identity_the_policy_no_longer_allows_is_not_sent_from(
    user: Jmap, dovecot: Dovecot, redis_url: str, smtp_sink: Sink
) -> None:
    """A message without Sender/From is sent from its Identity's email (7.5), but only while
    the sender policy allows it: an Identity made before the operator narrowed the policy
    still exists, and is not the policy's word."""
    shop = f"{user.username}+shop@{DOMAIN}"
    (made,) = await request(
        user, ("Identity/set", {"create": {"shop": {"email": shop, "name": "Shop"}}})
    )
    shop_id = made[1]["created"]["shop"]["id"]
    narrowed = sending_settings(dovecot, smtp_sink.url, redis_url, mail_domain=DOMAIN)
    async with (
        running_gateway(narrowed) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        again = await Jmap(http, user.username, dovecot.users[user.username]).start()
        mailboxes = await again.mailboxes()
        no_from = draft(again, mailboxes, to=["bob@example.com"], **{"from": None})
        responses = await request(
            again,
            ("Email/set", {"create": {"d": no_from}}),
            (
                "EmailSubmission/set",
                {"create": {"sub": {"identityId": shop_id, "emailId": "#d"}}},
            ),
        )
    error = not_created(responses)
    assert error["type"] == "forbiddenMailFrom", error
    assert [r for r in list(smtp_sink.received) if r.mail_from == shop] == []


async def test_a_bad_hold_in_one_create_leaves_the_others_sent_and_answered(
    user: Jmap, smtp_sink: Sink
) -> None:
    """One create's bad value is its own SetError: the create before it was sent and must be
    answered, or the client would send it again."""
    mailboxes = await user.mailboxes()
    envelope = {
        "mailFrom": {"email": address(user), "parameters": {"HOLDFOR": "\u00b2"}},
        "rcptTo": [{"email": "bob@example.com", "parameters": None}],
    }
    identity = await identity_id(user)
    responses = await request(
        user,
        ("Email/set", {"create": {"d": draft(user, mailboxes, to=["bob@example.com"])}}),
        (
            "EmailSubmission/set",
            {
                "create": {
                    "good": {"identityId": identity, "emailId": "#d"},
                    "bad": {"identityId": identity, "emailId": "#d", "envelope": envelope},
                }
            },
        ),
    )
    answer = responses[1][1]
    assert list(answer["created"]) == ["good"], answer
    assert answer["notCreated"]["bad"]["type"] == "invalidProperties"
    assert len(sent_by(smtp_sink, user)) == 1
