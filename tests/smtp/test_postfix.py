"""The SMTP client against a real Postfix submission server with Dovecot SASL and LMTP."""

from __future__ import annotations

import email
import email.policy
import logging
import time

import pytest

from gateway.credentials import Credentials
from gateway.smtp.connection import Authorization, SmtpEndpoint
from gateway.smtp.envelope import Envelope, Recipient
from gateway.smtp.outcome import AuthenticationRefused, Phase, SmtpFailure
from gateway.smtp.sender import SmtpSender
from tests.conftest import SERVICE_USER, STRICT_SIZE_LIMIT
from tests.servers import LOOPBACK, Dovecot
from tests.smtp_servers import Postfix, Sink

# Fields Postfix and Dovecot's LMTP put on top of a message they pass on (RFC 5321 4.4).
TRACE = (b"Return-Path:", b"Delivered-To:", b"Received:")


def sender(postfix: Postfix) -> SmtpSender:
    return SmtpSender(SmtpEndpoint(LOOPBACK, postfix.submission_port))


def message(subject: str, body: bytes = b"Hello Bob.\r\n") -> bytes:
    return (
        b"From: Alice <alice@example.com>\r\n"
        b"To: Bob <bob@example.com>\r\n"
        b"Subject: " + subject.encode() + b"\r\n"
        b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
        b"Message-ID: <" + subject.encode() + b"@example.com>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n" + body
    )


def delivered(dovecot: Dovecot, user: str, subject: str, timeout: float = 10.0) -> list[bytes]:
    """The messages with ``subject`` in the user's INBOX, asked of Dovecot with imaplib, once
    at least one arrived (LMTP delivery follows the queue by milliseconds)."""
    deadline = time.monotonic() + timeout
    while True:
        conn = dovecot.client(user)
        try:
            conn.select("INBOX", readonly=True)
            _, found = conn.search(None, "HEADER", "Subject", f'"{subject}"')
            raws = []
            for number in found[0].split():
                _, data = conn.fetch(number, "(BODY.PEEK[])")
                item = data[0]
                assert isinstance(item, tuple)
                raws.append(item[1])
        finally:
            conn.logout()
        if raws or time.monotonic() > deadline:
            return raws
        time.sleep(0.1)


def without_trace(raw: bytes) -> bytes:
    """The message minus the trace fields prepended on the way (each with its folded lines)."""
    lines = raw.split(b"\r\n")
    index = 0
    while index < len(lines) and (
        lines[index].startswith(TRACE) or (index and lines[index][:1] in (b" ", b"\t"))
    ):
        index += 1
    return b"\r\n".join(lines[index:])


def alice(dovecot: Dovecot) -> Authorization:
    return Authorization.user(Credentials("alice", dovecot.users["alice"]))


async def test_a_message_reaches_the_recipients_inbox_unchanged(
    postfix: Postfix, sending_dovecot: Dovecot
) -> None:
    # 8-bit text and a line starting with "." (dot-stuffed on the wire, RFC 5321 4.5.2).
    raw = message("delivery-check", "Grüße\r\n.a line with a dot\r\n..two\r\n".encode())
    smtp = sender(postfix)
    try:
        outcome = await smtp.send(
            alice(sending_dovecot),
            Envelope("alice@example.com", {"BODY": "8BITMIME"}, (Recipient("bob@example.com"),)),
            raw,
        )
    finally:
        await smtp.close()
    assert list(outcome.accepted) == ["bob@example.com"]
    assert outcome.accepted["bob@example.com"].code == 250
    assert outcome.refused == {}
    assert (outcome.final.code, outcome.final.enhanced) == (250, "2.0.0")
    [got] = delivered(sending_dovecot, "bob", "delivery-check")
    assert got.startswith(TRACE)
    assert without_trace(got) == raw


async def test_bare_line_feeds_arrive_as_crlf_and_nothing_else_changes(
    postfix: Postfix, sending_dovecot: Dovecot
) -> None:
    # SMTP cannot carry a bare LF (RFC 5321 2.3.8): it becomes CRLF, the only change made.
    raw = message("bare-lf-check", b"one\ntwo\r\nthree\n")
    smtp = sender(postfix)
    try:
        await smtp.send(
            alice(sending_dovecot),
            Envelope("alice@example.com", {}, (Recipient("bob@example.com"),)),
            raw,
        )
    finally:
        await smtp.close()
    [got] = delivered(sending_dovecot, "bob", "bare-lf-check")
    assert without_trace(got) == raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


async def test_a_wrong_password_is_refused_without_showing_it(
    postfix: Postfix, caplog: pytest.LogCaptureFixture
) -> None:
    password = "not-alices-password-0123"
    smtp = sender(postfix)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthenticationRefused) as caught:
        await smtp.send(
            Authorization.user(Credentials("alice", password)),
            Envelope("alice@example.com", {}, (Recipient("bob@example.com"),)),
            message("never-sent"),
        )
    await smtp.close()
    failure = caught.value
    assert failure.phase is Phase.AUTH
    assert failure.reply is not None
    assert (failure.reply.code, failure.reply.enhanced) == (535, "5.7.8")
    assert not failure.transient and not failure.ambiguous
    for text in (
        str(failure),
        repr(failure),
        caplog.text,
        repr(Authorization.user(Credentials("alice", password))),
    ):
        assert password not in text


async def test_a_service_account_sends_as_the_user(
    postfix: Postfix, sending_dovecot: Dovecot
) -> None:
    """RFC 4616 PLAIN with an authorization identity: Postfix sees alice as the login."""
    service = Authorization.service(Credentials(*SERVICE_USER), "alice")
    smtp = sender(postfix)
    try:
        outcome = await smtp.send(
            service,
            Envelope("alice@example.com", {}, (Recipient("bob@example.com"),)),
            message("service-account-check"),
        )
    finally:
        await smtp.close()
    assert outcome.final.code == 250
    assert delivered(sending_dovecot, "bob", "service-account-check")
    assert "sasl_method=PLAIN, sasl_username=alice" in postfix.log_text()


async def test_a_service_account_cannot_act_for_an_unknown_user(postfix: Postfix) -> None:
    smtp = sender(postfix)
    with pytest.raises(AuthenticationRefused):
        await smtp.send(
            Authorization.service(Credentials(*SERVICE_USER), "nobody-at-all"),
            Envelope("alice@example.com", {}, (Recipient("bob@example.com"),)),
            message("never-sent-either"),
        )
    await smtp.close()


async def test_other_domains_are_relayed_with_the_parameters_given(
    postfix: Postfix, sending_dovecot: Dovecot, smtp_sink: Sink
) -> None:
    smtp = sender(postfix)
    try:
        await smtp.send(
            alice(sending_dovecot),
            Envelope(
                "alice@example.com",
                {"RET": "HDRS", "ENVID": "relay-check-1"},
                (Recipient("dave@elsewhere.example.org", {"NOTIFY": "NEVER"}),),
            ),
            message("relay-check"),
        )
    finally:
        await smtp.close()
    deadline = time.monotonic() + 10
    while not smtp_sink.to("dave@elsewhere.example.org") and time.monotonic() < deadline:
        time.sleep(0.05)
    [received] = smtp_sink.to("dave@elsewhere.example.org")
    assert received.mail_from == "alice@example.com"
    # Postfix passes the DSN parameters on (RFC 3461 5.2/5.3): ENVID as given, case kept.
    assert "ENVID=relay-check-1" in received.mail_parameters
    assert "NOTIFY=NEVER" in received.rcpt_parameters["dave@elsewhere.example.org"]
    parsed = email.message_from_bytes(received.content, policy=email.policy.default)
    assert parsed["Subject"] == "relay-check"


async def test_the_strict_postfix_refusals(
    strict_postfix: Postfix, sending_dovecot: Dovecot
) -> None:
    """What strict_postfix's opt-ins answer, as the harness measured them."""
    smtp = sender(strict_postfix)
    try:
        extensions = await smtp.probe()
        assert extensions.size == STRICT_SIZE_LIMIT
        # reject_sender_login_mismatch answers at the first RCPT (smtpd_delay_reject).
        with pytest.raises(SmtpFailure) as forged:
            await smtp.send(
                alice(sending_dovecot),
                Envelope("bob@example.com", {}, (Recipient("carol@example.com"),)),
                message("forged"),
            )
        assert forged.value.phase is Phase.RCPT
        [reply] = forged.value.refused.values()
        assert (reply.code, reply.enhanced) == (553, "5.7.1")
        assert "Sender address rejected: not owned by user alice" in reply.text
        outcome = await smtp.send(
            alice(sending_dovecot),
            Envelope(
                "alice+tag@example.com",
                {},
                (Recipient("bob@example.com"), Recipient("nobody-here@example.com")),
            ),
            message("strict-check"),
        )
        assert list(outcome.accepted) == ["bob@example.com"]
        assert (outcome.refused["nobody-here@example.com"].code) == 550
        assert outcome.refused["nobody-here@example.com"].enhanced == "5.1.1"
        with pytest.raises(SmtpFailure) as big:
            await smtp.send(
                alice(sending_dovecot),
                Envelope(
                    "alice@example.com",
                    {"SIZE": str(STRICT_SIZE_LIMIT + 1)},
                    (Recipient("bob@example.com"),),
                ),
                message("too-big"),
            )
        assert big.value.phase is Phase.MAIL
        assert big.value.reply is not None and big.value.reply.code == 552
    finally:
        await smtp.close()
