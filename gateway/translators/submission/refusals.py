"""What an SMTP server's refusal means for one EmailSubmission create: reply → SetError.

A submission server says why it refused with a reply code (RFC 5321 4.2) and, mostly, an
enhanced status code (RFC 3463); unlike an IMAP server's text, its reply text is written for
the sender (Postfix names the address and the rule), so it is kept in the SetError's
description. One table says what a refusal means, first match wins; a refusal is classified
by its reply rather than by the command it answered alone, because servers refuse the same
thing at different commands: Postfix's check that the login owns the sender address
(smtpd_sender_login_maps) answers ``553 5.7.1 <x>: Sender address rejected: not owned by
user alice`` at the first RCPT, not at MAIL.

Before any of that: a failure that is safe to try again (4xx, or the connection lost before
the final "." went out) is a ``serverFail`` saying so, and nothing was sent; one where the
message may have been sent (the connection lost after the "." and before its reply, RFC
1047) is not an error at all: the caller records the submission with its delivery unknown,
so that no client resends it blindly (see deliver.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.jmap.errors import SetError, SetErrorType
from gateway.smtp.outcome import Phase, SmtpFailure
from gateway.smtp.replies import Reply

RETRY = "nothing was sent; the submission may be created again"


@dataclass(frozen=True)
class _Rule:
    """A kind of refusal: the replies it covers, the SetError it is and why."""

    type: SetErrorType
    why: str
    matches: Callable[[Phase, Reply], bool]


def _sender_rejected(phase: Phase, reply: Reply) -> bool:
    # Postfix's reject_sender_login_mismatch and its kin, at MAIL or at every RCPT.
    return reply.enhanced == "5.7.1" and "sender address" in reply.text.lower()


def _bad_sender(phase: Phase, reply: Reply) -> bool:
    # RFC 3463 X.1.7 and X.1.8: the sender's address is bad; 553 at MAIL: not allowed.
    enhanced = reply.enhanced or ""
    return phase is Phase.MAIL and (enhanced[2:] in ("1.7", "1.8") or reply.code == 553)


def _too_large(phase: Phase, reply: Reply) -> bool:
    # RFC 1870 6.1 and RFC 3463 X.3.4: 552 at MAIL (SIZE=) or after the final ".".
    message_phase = phase in (Phase.MAIL, Phase.DATA, Phase.FINAL)
    return message_phase and (reply.code == 552 or (reply.enhanced or "")[2:] == "3.4")


def _bad_content(phase: Phase, reply: Reply) -> bool:
    # RFC 3463 X.6.x: the message's content or media is refused.
    return phase in (Phase.DATA, Phase.FINAL) and (reply.enhanced or "")[2:4] == "6."


def _login_refused(phase: Phase, reply: Reply) -> bool:
    # RFC 4954 6: 535 bad credentials, 534 mechanism too weak, 530 authentication required.
    return phase is Phase.AUTH or reply.code in (530, 534, 535)


def _every_recipient(phase: Phase, reply: Reply) -> bool:
    return phase is Phase.RCPT


def _anything(phase: Phase, reply: Reply) -> bool:
    return True


RULES: tuple[_Rule, ...] = (
    _Rule(
        "forbiddenMailFrom", "the SMTP server does not let this user send from it", _sender_rejected
    ),
    _Rule("forbiddenMailFrom", "the SMTP server refused the envelope's sender", _bad_sender),
    _Rule("tooLarge", "the message is larger than the SMTP server takes", _too_large),
    _Rule("invalidEmail", "the SMTP server refused the message's content", _bad_content),
    _Rule("forbiddenToSend", "the SMTP server refused the gateway's login", _login_refused),
    _Rule("invalidRecipients", "the SMTP server refused every recipient", _every_recipient),
    _Rule("forbiddenToSend", "the SMTP server refused to send", _anything),
)


def set_error_for(failure: SmtpFailure, *, max_size: int) -> SetError:
    """RFC 8621 7.5: the SetError of a create the server refused, its reply text kept.

    ``max_size`` is the tooLarge SetError's maxSize (7.5 MUST): the SIZE the server
    advertised, or the gateway's own bound.
    """
    if failure.ambiguous:
        return SetError(
            "serverFail",
            "the connection to the SMTP server was lost after the message was sent and before "
            "its answer: it may have been sent",
            cause=failure,
        )
    if failure.transient:
        return SetError("serverFail", _described(f"the SMTP server failed; {RETRY}", failure))
    reply = failure.reply or _first(failure.refused)
    if reply is None:
        return SetError("serverFail", "the SMTP server failed", cause=failure)
    phase = failure.phase
    # Every RCPT refused: the reply that says why is a recipient's.
    rule = next(r for r in RULES if r.matches(phase, reply))
    description = _described(rule.why, failure)
    if rule.type == "tooLarge":
        return SetError("tooLarge", description, {"maxSize": max_size})
    if rule.type == "invalidRecipients":
        return SetError(rule.type, description, {"invalidRecipients": sorted(failure.refused)})
    if rule.type == "invalidEmail":
        return SetError(rule.type, description, {"properties": []})
    return SetError(rule.type, description)


def _first(refused: Mapping[str, Reply]) -> Reply | None:
    return next(iter(refused.values()), None)


def _described(why: str, failure: SmtpFailure) -> str:
    """``why``, and the server's words: the failing reply, or each refused recipient's."""
    if failure.refused and failure.phase is Phase.RCPT:
        refused = failure.refused.items()
        replies = "; ".join(f'{address}: "{reply}"' for address, reply in refused)
        return f"{why}: {replies}"
    if failure.reply is not None:
        return f'{why}: "{failure.reply}"'
    return f"{why} ({failure.phase.name.lower()}: the connection failed)"
