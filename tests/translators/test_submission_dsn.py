"""Delivery reports end to end: a message sent through the gateway and a real Postfix, whose
DSNs (RFC 3464) Postfix delivers to the sender's INBOX over LMTP; the gateway's catch-up
finds them and the submission's deliveryStatus and dsnBlobIds follow.

Postfix hands a message for a user to Dovecot's LMTP and reports that as "relayed"; for
an unknown user of its LMTP domain it takes the RCPT (250), then Dovecot refuses it and
Postfix bounces with 5.1.1 within a fraction of a second. The sender's INBOX, read with a
plain imaplib session, is the witness of what arrived.
"""

from __future__ import annotations

import email
import email.policy
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import running_gateway, sending_settings
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.smtp_servers import Postfix
from tests.translators.submitting import DOMAIN, address, request, submission_when, submit

# How often the test asks again before giving up on a report (Postfix sends them in well
# under a second; this only bounds a broken run).
ATTEMPTS = 200


@pytest.fixture
async def gateway(sending_dovecot: Dovecot, postfix: Postfix, redis_url: str) -> AsyncIterator[str]:
    settings = sending_settings(sending_dovecot, postfix.url, redis_url, mail_domain=DOMAIN)
    async with running_gateway(settings) as url:
        yield url


@pytest.fixture
async def sender(sending_dovecot: Dovecot, gateway: str) -> AsyncIterator[Jmap]:
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        name = sending_dovecot.fresh_user()
        yield await Jmap(http, name, sending_dovecot.users[name]).start()


async def send(user: Jmap, recipients: list[str], notify: str) -> dict[str, Any]:
    """A draft to ``recipients``, sent with NOTIFY=``notify`` for each (RFC 3461 4.1)."""
    envelope = {
        "mailFrom": {"email": address(user), "parameters": {"RET": "HDRS"}},
        "rcptTo": [{"email": r, "parameters": {"NOTIFY": notify}} for r in recipients],
    }
    responses = await submit(user, {"to": recipients}, {"envelope": envelope})
    created = responses[1][1]["created"]
    assert created is not None, responses[1]
    return created["sub"]  # type: ignore[no-any-return]


async def reported(user: Jmap, submission_id: str, recipients: int) -> dict[str, Any]:
    """The submission once every recipient's status moved on from "queued"."""

    def done(found: dict[str, Any]) -> bool:
        statuses = found["deliveryStatus"].values()
        moved_on = [s for s in statuses if s["delivered"] != "queued"]
        return len(moved_on) == recipients and len(found["dsnBlobIds"]) == recipients

    return await submission_when(user, submission_id, done, tries=ATTEMPTS, pause=0.1)


def inbox_reports(dovecot: Dovecot, user: str) -> list[email.message.EmailMessage]:
    """The reports in the user's INBOX, by a plain IMAP session."""
    conn = dovecot.client(user)
    try:
        conn.select("INBOX", readonly=True)
        _, data = conn.fetch("1:*", "(BODY.PEEK[])")
        messages = [
            email.message_from_bytes(item[1], policy=email.policy.default)
            for item in data
            if isinstance(item, tuple)
        ]
        return [m for m in messages if m.get_content_type() == "multipart/report"]  # type: ignore[misc]
    finally:
        conn.logout()


async def test_relayed_and_bounced_recipients_follow_their_reports(
    sender: Jmap, sending_dovecot: Dovecot
) -> None:
    receiver = sending_dovecot.fresh_user()
    present = f"{receiver}@{DOMAIN}"
    unknown = f"nobody-{secrets.token_hex(4)}@{DOMAIN}"
    created = await send(sender, [present, unknown], "SUCCESS,FAILURE")
    submission_id = created["id"]

    found = await reported(sender, submission_id, 2)
    statuses = found["deliveryStatus"]
    # RFC 3464 "relayed" (Postfix's word for the LMTP hand-off) is delivered "yes".
    assert statuses[present]["delivered"] == "yes"
    assert statuses[present]["smtpReply"].startswith("250 2.0.0 ")
    # The bounce: "no", and the reply Dovecot gave Postfix, from the Diagnostic-Code.
    assert statuses[unknown]["delivered"] == "no"
    assert statuses[unknown]["smtpReply"].startswith(f"550 5.1.1 <{unknown}> User doesn't exist")
    assert found["undoStatus"] == "final"

    # The reports are Emails of the sender's INBOX, and dsnBlobIds are their blobIds.
    reports = inbox_reports(sending_dovecot, sender.username)
    assert len(reports) == 2
    inbox = (await sender.mailboxes())["Inbox"]["id"]
    responses = await request(
        sender,
        ("Email/query", {"filter": {"inMailbox": inbox}}),
        (
            "Email/get",
            {
                "#ids": {"resultOf": "c0", "name": "Email/query", "path": "/ids"},
                "properties": ["blobId", "subject"],
            },
        ),
    )
    emails = responses[1][1]["list"]
    assert sorted(found["dsnBlobIds"]) == sorted(e["blobId"] for e in emails)
    subjects = {e["subject"] for e in emails}
    assert subjects == {str(m["Subject"]) for m in reports}


async def test_without_notify_success_only_the_bounce_reports(
    sender: Jmap, sending_dovecot: Dovecot
) -> None:
    """Postfix's default (no NOTIFY) reports failures only: the delivered recipient stays
    "queued", as far as the gateway can know, and only the bounce is in dsnBlobIds."""
    receiver = sending_dovecot.fresh_user()
    present = f"{receiver}@{DOMAIN}"
    unknown = f"nobody-{secrets.token_hex(4)}@{DOMAIN}"
    created = await send(sender, [present, unknown], "FAILURE")
    submission_id = created["id"]
    found = await submission_when(
        sender, submission_id, lambda found: bool(found["dsnBlobIds"]), tries=ATTEMPTS, pause=0.1
    )
    assert len(found["dsnBlobIds"]) == 1
    assert found["deliveryStatus"][unknown]["delivered"] == "no"
    assert found["deliveryStatus"][present]["delivered"] == "queued"
    # The message itself did arrive: a plain IMAP session on the receiver's INBOX sees it.
    conn = sending_dovecot.client(receiver)
    try:
        _, (count,) = conn.select("INBOX", readonly=True)
        assert count == b"1"
    finally:
        conn.logout()
