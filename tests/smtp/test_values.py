"""Replies, EHLO extensions and envelopes: the SMTP layer's values, without a server."""

from __future__ import annotations

import pytest

from gateway.smtp.envelope import MAX_RECIPIENTS, Envelope, Recipient, options
from gateway.smtp.extensions import Extensions
from gateway.smtp.outcome import Phase, SmtpFailure
from gateway.smtp.replies import Reply

# Postfix 3.7's EHLO on the submission port (harness README, section 4), as aiosmtplib gives
# it: one line per keyword, codes removed.
POSTFIX_EHLO = (
    "smtp.example.com\nPIPELINING\nSIZE 52428800\nVRFY\nETRN\nAUTH PLAIN LOGIN\n"
    "ENHANCEDSTATUSCODES\n8BITMIME\nDSN\nSMTPUTF8\nCHUNKING"
)


def test_reply_with_an_enhanced_code() -> None:
    reply = Reply.parse(553, "5.7.1 <bob@example.com>: Sender address rejected: not owned")
    assert (reply.code, reply.enhanced) == (553, "5.7.1")
    assert reply.text == "<bob@example.com>: Sender address rejected: not owned"
    assert str(reply) == "553 5.7.1 <bob@example.com>: Sender address rejected: not owned"
    assert not reply.transient and not reply.positive


def test_reply_without_an_enhanced_code() -> None:
    reply = Reply.parse(250, "2.0 is not one")
    assert reply.enhanced is None and str(reply) == "250 2.0 is not one"
    assert Reply.parse(451, "").transient


def test_multi_line_reply_keeps_its_lines() -> None:
    reply = Reply.parse(550, "5.1.1 first line\n5.1.1 second line")
    assert reply.enhanced == "5.1.1" and reply.text == "first line\nsecond line"
    assert str(reply) == "550 5.1.1 first line second line"
    # Codes that differ between lines are not taken for an enhanced code.
    mixed = Reply.parse(550, "5.1.1 first\n4.1.1 second")
    assert mixed.enhanced is None and mixed.text == "5.1.1 first\n4.1.1 second"


def test_extensions_from_postfix() -> None:
    extensions = Extensions.parse(POSTFIX_EHLO)
    assert extensions.has("dsn") and extensions.has("SMTPUTF8")
    assert extensions.size == 52428800
    assert extensions.future_release is None
    # RFC 8621 1.3.2: what a client may use; the gateway's own conversation is left out.
    assert extensions.as_jmap() == {
        "SIZE": ["52428800"],
        "ENHANCEDSTATUSCODES": [],
        "8BITMIME": [],
        "DSN": [],
        "SMTPUTF8": [],
    }
    assert Extensions.from_kept(extensions.as_kept()) == extensions


def test_extensions_edge_cases() -> None:
    assert Extensions.parse("x\nSIZE 0").size is None  # RFC 1870: 0 is no fixed limit
    assert Extensions.parse("x\nSIZE").size is None
    assert Extensions.parse("x\nFUTURERELEASE 604800 2026-12-14T00:00:00Z").future_release == 604800
    assert not Extensions.parse("x\nbad_keyword").keywords
    many = "x\n" + "\n".join(f"X-K{i}" for i in range(500))
    assert len(Extensions.parse(many).keywords) == 100
    with pytest.raises(ValueError):
        Extensions.from_kept({"SIZE": "1"})


def test_envelope_options() -> None:
    assert options({"ENVID": "abc", "SMTPUTF8": None}) == ["ENVID=abc", "SMTPUTF8"]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Recipient("bob@example.com>\r\nRCPT TO:<eve@example.com"),
        lambda: Recipient("bob@example.com", {"NOTIFY": "SUCCESS\r\nDATA"}),
        lambda: Recipient("bob@example.com", {"NO TIFY": "x"}),
        lambda: Recipient(""),
        lambda: Envelope("a@b\r\nQUIT", {}, (Recipient("b@c"),)),
        lambda: Envelope("a@b", {}, ()),
        lambda: Envelope("a@b", {"ENVID": "x y"}, (Recipient("b@c"),)),
        lambda: Envelope("a@b", {}, tuple(Recipient(f"r{i}@c") for i in range(MAX_RECIPIENTS + 1))),
    ],
)
def test_envelopes_that_could_smuggle_commands_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_null_sender_is_allowed() -> None:
    assert Envelope("", {}, (Recipient("b@c"),)).mail_from == ""


def test_failure_kinds() -> None:
    cut_before = SmtpFailure(Phase.DATA, None, detail="connection lost")
    cut_after = SmtpFailure(Phase.FINAL, None, detail="connection lost")
    refused = SmtpFailure(Phase.FINAL, Reply(554, "5.6.0", "no"))
    later = SmtpFailure(Phase.MAIL, Reply(451, "4.3.0", "later"))
    assert (cut_before.transient, cut_before.ambiguous) == (True, False)
    assert (cut_after.transient, cut_after.ambiguous) == (False, True)
    assert (refused.transient, refused.ambiguous) == (False, False)
    assert (later.transient, later.ambiguous) == (True, False)
    assert str(refused) == "SMTP final: 554 5.6.0 no"
