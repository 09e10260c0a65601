"""SMTP refusals → SetErrors (RFC 8621 7.5), on replies as Postfix words them (harness README
section 4 and the plan's measurements), the server's text kept in the description."""

from __future__ import annotations

import pytest

from gateway.smtp.outcome import AuthenticationRefused, Phase, SmtpFailure, SmtpUnavailable
from gateway.smtp.replies import Reply
from gateway.translators.submission.refusals import set_error_for

SENDER_LOGIN = Reply(
    553, "5.7.1", "<boss@example.com>: Sender address rejected: not owned by user alice"
)
UNKNOWN_USER = Reply(550, "5.1.1", "<nobody@example.com>: Recipient address rejected: User unknown")


def test_sender_login_mismatch_at_rcpt_is_forbidden_mail_from() -> None:
    # Postfix answers it at every RCPT, not at MAIL: the reply decides, not the phase.
    failure = SmtpFailure(
        Phase.RCPT,
        SENDER_LOGIN,
        {"bob@example.com": SENDER_LOGIN, "carol@example.com": SENDER_LOGIN},
    )
    error = set_error_for(failure, max_size=1000)
    assert error.type == "forbiddenMailFrom"
    assert "Sender address rejected: not owned by user alice" in (error.description or "")


def test_every_recipient_refused_is_invalid_recipients_listing_them() -> None:
    failure = SmtpFailure(
        Phase.RCPT,
        UNKNOWN_USER,
        {"nobody@example.com": UNKNOWN_USER, "ghost@example.com": UNKNOWN_USER},
    )
    error = set_error_for(failure, max_size=1000)
    assert error.type == "invalidRecipients"
    assert error.extra == {"invalidRecipients": ["ghost@example.com", "nobody@example.com"]}
    assert "User unknown" in (error.description or "")


@pytest.mark.parametrize(
    ("phase", "reply"),
    [
        (Phase.MAIL, Reply(552, "5.3.4", "Message size exceeds fixed limit")),
        (Phase.FINAL, Reply(552, "5.3.4", "Error: message file too big")),
    ],
)
def test_too_large_carries_max_size(phase: Phase, reply: Reply) -> None:
    error = set_error_for(SmtpFailure(phase, reply), max_size=4096)
    assert error.type == "tooLarge"
    assert error.extra == {"maxSize": 4096}
    assert reply.text in (error.description or "")


def test_a_refused_login_is_forbidden_to_send() -> None:
    failure = AuthenticationRefused(
        Phase.AUTH, Reply(535, "5.7.8", "Error: authentication failed: authentication failure")
    )
    error = set_error_for(failure, max_size=1)
    assert error.type == "forbiddenToSend"
    assert "535 5.7.8 Error: authentication failed" in (error.description or "")


@pytest.mark.parametrize(
    ("phase", "reply", "expected"),
    [
        (
            Phase.MAIL,
            Reply(553, "5.1.8", "<x@nowhere.invalid>: Sender address rejected"),
            "forbiddenMailFrom",
        ),
        (Phase.MAIL, Reply(553, None, "sorry, that domain isn't allowed"), "forbiddenMailFrom"),
        (Phase.MAIL, Reply(530, "5.7.0", "Must issue a STARTTLS command first"), "forbiddenToSend"),
        (Phase.MAIL, Reply(550, "5.7.1", "Policy: sending suspended"), "forbiddenToSend"),
        (Phase.FINAL, Reply(554, "5.6.0", "Message has malformed headers"), "invalidEmail"),
        (Phase.FINAL, Reply(554, "5.7.1", "Spam message rejected"), "forbiddenToSend"),
    ],
)
def test_permanent_refusals(phase: Phase, reply: Reply, expected: str) -> None:
    error = set_error_for(SmtpFailure(phase, reply), max_size=1)
    assert error.type == expected
    assert reply.text in (error.description or "")


@pytest.mark.parametrize(
    "failure",
    [
        SmtpUnavailable(Phase.CONNECT, None, detail="connection refused"),
        SmtpFailure(Phase.FINAL, Reply(451, "4.3.0", "Error: queue file write error")),
        SmtpFailure(Phase.MAIL, Reply(421, "4.7.0", "Too many connections")),
        SmtpFailure(Phase.DATA, None, detail="connection lost"),
    ],
)
def test_transient_failures_say_nothing_was_sent(failure: SmtpFailure) -> None:
    assert failure.transient
    error = set_error_for(failure, max_size=1)
    assert error.type == "serverFail"
    assert "nothing was sent" in (error.description or "")


def test_a_lost_reply_after_the_dot_is_never_called_retryable() -> None:
    failure = SmtpFailure(Phase.FINAL, None, detail="timed out")
    assert failure.ambiguous
    error = set_error_for(failure, max_size=1)
    assert "may have been sent" in (error.description or "")
    assert "nothing was sent" not in (error.description or "")


def test_smtp_reply_is_one_line() -> None:
    # RFC 8621 7's own example of a multi-line reply.
    reply = Reply(550, "5.7.1", "Our system has detected that this message is\nlikely spam.")
    assert str(reply) == "550 5.7.1 Our system has detected that this message is likely spam."
    assert str(Reply(250, None, "Ok")) == "250 Ok"
