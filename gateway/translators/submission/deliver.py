"""Sending a prepared submission now, and what the server's answer makes of its record.

RFC 5321 6.1 and RFC 1047: once the final "." of DATA is out, the message may have been
accepted even if no reply comes back. Such a send is never repeated, here or by the client:
the submission is recorded ``final`` with every recipient's delivery ``unknown`` and an
smtpReply saying the answer was lost, so a client sees it was (probably) sent rather than an
error inviting a retry. Every other failure leaves no record: a transient one (4xx, or the
connection lost before the ".") is a SetError saying that nothing was sent, and creating the
submission again sends the message once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime

from gateway.cache.submissions import DeliveryStatus, SubmissionRecord
from gateway.env import RequestEnv
from gateway.jmap.errors import SetError
from gateway.smtp.outcome import Outcome, SmtpFailure
from gateway.smtp.sender import Authorization, SmtpSender
from gateway.translators.submission.create import Prepared
from gateway.translators.submission.refusals import set_error_for

log = logging.getLogger(__name__)

# RFC 8621 7 smtpReply for a recipient whose fate is unknown: a synthetic reply in the form
# the RFC asks of one (code, enhanced code, text), 4.4.2 being "bad connection" (RFC 3463).
REPLY_LOST = (
    "451 4.4.2 The connection to the submission server was lost after the message was sent "
    "and before its reply: it may have been accepted. Not sent again."
)


def delivery_status(outcome: Outcome) -> dict[str, DeliveryStatus]:
    """RFC 8621 7 deliveryStatus after a send: each accepted recipient ``queued`` with its
    RCPT reply (the DATA reply accepted the message for all of them), each refused one
    ``no`` with the reply that refused it (the gateway does not try again later)."""
    status = {
        address: DeliveryStatus(str(reply), "queued") for address, reply in outcome.accepted.items()
    }
    for address, reply in outcome.refused.items():
        status[address] = DeliveryStatus(str(reply), "no")
    return status


def unknown_status(prepared: Prepared) -> dict[str, DeliveryStatus]:
    """Every recipient ``unknown``: the reply to the final "." was lost (RFC 1047)."""
    return {r.address: DeliveryStatus(REPLY_LOST, "unknown") for r in prepared.envelope.recipients}


def utc_date(moment: datetime | None = None) -> str:
    """UTCDate (RFC 8620 1.4) of ``moment``, or of this second; also RFC 4865's HOLDUNTIL
    form (an RFC 3339 date-time)."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def deliver(
    env: RequestEnv, prepared: Prepared, *, release: datetime | None = None
) -> SubmissionRecord | SetError:
    """Send ``prepared`` now with the caller's own login and record the submission ``final``.

    RFC 8621 7: sendAt is then the time it was sent, or ``release``, when the server holds the
    message until then (FUTURERELEASE: hold.py gives the envelope its HOLDUNTIL)."""
    sender = env.services.smtp
    if sender is None:
        return SetError("forbiddenToSend", "sending is not configured on this server")
    result = await send_once(sender, request_authorization(env), prepared)
    if isinstance(result, SetError):
        return result
    record = replace(
        prepared.record,
        undo_status="final",
        send_at=utc_date(release),
        delivery_status=result,
        finished_at=time.time(),
    )
    try:
        await env.index.submissions.create(record)
    except Exception:
        # The message is sent: an error now would invite the client to send it again.
        # RFC 8621 7 lets a server forget a submission at once ("very basic SMTP proxies"),
        # so the client still learns it was sent; the record is lost, which the log says.
        log.exception("submission %s was sent but could not be recorded", record.id)
    return record


async def send_once(
    sender: SmtpSender, auth: Authorization, prepared: Prepared
) -> dict[str, DeliveryStatus] | SetError:
    """One SMTP transaction: the recipients' status, or the SetError of a refusal. The
    caller records the submission on a status, and nothing on a SetError."""
    try:
        outcome = await sender.send(auth, prepared.envelope, prepared.message)
    except SmtpFailure as failure:
        if failure.ambiguous:
            log.warning(
                "submission %s: the reply to the end of DATA was lost; recorded as sent with "
                "its delivery unknown, never sent again",
                prepared.record.id,
            )
            return unknown_status(prepared)
        return set_error_for(failure, max_size=prepared.max_size)
    return delivery_status(outcome)


def request_authorization(env: RequestEnv) -> Authorization:
    """How a send the user asks for now logs in to the submission server (GATEWAY_SMTP_AUTH)."""
    return env.services.authorization(env.principal.login.credentials)
