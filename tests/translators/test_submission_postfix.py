"""EmailSubmission/set through a real Postfix (submission with Dovecot SASL, example.com by
LMTP into Dovecot): the message arrives in the recipients' INBOXes as stored minus Bcc, and
Postfix's own refusals (the sender login check at RCPT, unverified recipients, its SIZE)
become RFC 8621 7.5's SetErrors with Postfix's words kept."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import STRICT_SIZE_LIMIT, running_gateway, sending_settings
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.smtp.test_postfix import delivered, without_trace
from tests.smtp_servers import Postfix
from tests.translators.submitting import DOMAIN, request, submit


async def client(sending_dovecot: Dovecot, url: str) -> AsyncIterator[Jmap]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        name = sending_dovecot.fresh_user()
        yield await Jmap(http, name, sending_dovecot.users[name]).start()


@pytest.fixture
async def user(sending_dovecot: Dovecot, postfix: Postfix, redis_url: str) -> AsyncIterator[Jmap]:
    settings = sending_settings(sending_dovecot, postfix.url, redis_url, mail_domain=DOMAIN)
    async with running_gateway(settings) as url:
        async for jmap in client(sending_dovecot, url):
            yield jmap


@pytest.fixture
async def strict_user(
    sending_dovecot: Dovecot, strict_postfix: Postfix, redis_url: str
) -> AsyncIterator[Jmap]:
    # The gateway lets any example.com address through: Postfix's own check is what refuses.
    settings = sending_settings(
        sending_dovecot,
        strict_postfix.url,
        redis_url,
        mail_domain=DOMAIN,
        identity_addresses="{address},*@{domain}",
    )
    async with running_gateway(settings) as url:
        async for jmap in client(sending_dovecot, url):
            yield jmap


def someone(dovecot: Dovecot) -> str:
    """A fresh user of the Dovecot Postfix delivers example.com to."""
    return dovecot.fresh_user()


def folder(dovecot: Dovecot, user: str, name: str) -> list[tuple[bytes, bytes]]:
    """(FETCH line, octets) of each message in the folder, asked with imaplib."""
    conn = dovecot.client(user)
    try:
        _, (count,) = conn.select(name, readonly=True)
        if count == b"0":
            return []
        _, data = conn.fetch("1:*", "(FLAGS BODY.PEEK[])")
        return [(item[0], item[1]) for item in data if isinstance(item, tuple)]
    finally:
        conn.logout()


async def test_sent_to_bob_and_carol_bcc_removed_draft_moved_to_sent(
    user: Jmap, sending_dovecot: Dovecot
) -> None:
    bob, carol = someone(sending_dovecot), someone(sending_dovecot)
    subject = f"to bob {secrets.token_hex(4)}"
    mailboxes = await user.mailboxes()
    drafts, sent = mailboxes["Drafts"]["id"], mailboxes["Sent"]["id"]
    responses = await submit(
        user,
        {
            "to": [f"{bob}@{DOMAIN}"],
            "bcc": [f"{carol}@{DOMAIN}"],
            "subject": subject,
            "bodyValues": {"1": {"value": "Grüße,\r\n.a line with a dot\r\n"}},
        },
        onSuccessUpdateEmail={
            "#sub": {
                "keywords/$draft": None,
                f"mailboxIds/{drafts}": None,
                f"mailboxIds/{sent}": True,
            }
        },
    )
    assert [r[0] for r in responses] == ["Email/set", "EmailSubmission/set", "Email/set"]
    created = responses[1][1]["created"]["sub"]
    assert {a: s["delivered"] for a, s in created["deliveryStatus"].items()} == {
        f"{bob}@{DOMAIN}": "queued",
        f"{carol}@{DOMAIN}": "queued",
    }
    assert created["deliveryStatus"][f"{bob}@{DOMAIN}"]["smtpReply"] == "250 2.1.5 Ok"
    # Dovecot: the draft is in Sent without \Draft, and nothing is left in Drafts.
    assert folder(sending_dovecot, user.username, "Drafts") == []
    ((flags, stored),) = folder(sending_dovecot, user.username, "Sent")
    assert b"\\Draft" not in flags
    expected = b"".join(
        line for line in stored.splitlines(keepends=True) if not line.startswith(b"Bcc:")
    )
    assert expected != stored
    # Both got the stored octets, the Bcc field gone, trace fields on top.
    for recipient in (bob, carol):
        (got,) = delivered(sending_dovecot, recipient, subject)
        assert without_trace(got) == expected


async def test_the_sender_login_check_is_forbidden_mail_from(
    strict_user: Jmap, sending_dovecot: Dovecot
) -> None:
    bob = someone(sending_dovecot)
    responses = await submit(
        strict_user,
        {"to": [f"{bob}@{DOMAIN}"], "from": [{"email": f"boss@{DOMAIN}"}]},
    )
    assert responses[1][1]["created"] is None
    error = responses[1][1]["notCreated"]["sub"]
    # Postfix answers at the first RCPT: the reply, not the phase, names it.
    assert error["type"] == "forbiddenMailFrom"
    assert (
        f"553 5.7.1 <boss@{DOMAIN}>: Sender address rejected: not owned by user "
        f"{strict_user.username}" in error["description"]
    )
    (got,) = await request(strict_user, ("EmailSubmission/get", {"ids": None}))
    assert got[1]["list"] == []


async def test_unverified_recipients(strict_user: Jmap, sending_dovecot: Dovecot) -> None:
    bob, carol = someone(sending_dovecot), someone(sending_dovecot)
    nobody = f"nobody-{secrets.token_hex(4)}@{DOMAIN}"
    subject = f"verified {secrets.token_hex(4)}"
    responses = await submit(
        strict_user,
        {"to": [f"{bob}@{DOMAIN}", nobody, f"{carol}@{DOMAIN}"], "subject": subject},
    )
    status = responses[1][1]["created"]["sub"]["deliveryStatus"]
    assert status[nobody]["delivered"] == "no"
    assert status[nobody]["smtpReply"].startswith(f"550 5.1.1 <{nobody}>: Recipient address")
    assert status[f"{bob}@{DOMAIN}"]["delivered"] == "queued"
    assert status[f"{carol}@{DOMAIN}"]["delivered"] == "queued"
    assert delivered(sending_dovecot, bob, subject)
    # Every recipient refused: invalidRecipients listing them, nothing recorded.
    ghost = f"ghost-{secrets.token_hex(4)}@{DOMAIN}"
    responses = await submit(strict_user, {"to": [nobody, ghost]})
    error = responses[1][1]["notCreated"]["sub"]
    assert error["type"] == "invalidRecipients"
    assert error["invalidRecipients"] == sorted([nobody, ghost])
    assert "550 5.1.1" in error["description"]


async def test_the_size_limit_is_too_large_with_max_size(
    strict_user: Jmap, sending_dovecot: Dovecot
) -> None:
    bob = someone(sending_dovecot)
    subject = f"too large {secrets.token_hex(4)}"
    big = "x" * 70 + "\r\n"
    responses = await submit(
        strict_user,
        {
            "to": [f"{bob}@{DOMAIN}"],
            "subject": subject,
            "bodyValues": {"1": {"value": big * (STRICT_SIZE_LIMIT // 70)}},
        },
    )
    error = responses[1][1]["notCreated"]["sub"]
    # The SIZE Postfix advertised (RFC 1870), checked before sending.
    assert error["type"] == "tooLarge"
    assert error["maxSize"] == STRICT_SIZE_LIMIT
    assert delivered(sending_dovecot, bob, subject, timeout=0) == []
