"""One EmailSubmission create checked and readied to send (RFC 8621 7.5), sent or not.

Everything that can be known before talking to the SMTP server is checked here, so that a
refusal costs no SMTP transaction and a held submission (sent later, without the user) is
already known to be sendable: the Email and the Identity exist in the caller's account, the
sender policy allows the From and the envelope's mailFrom, the envelope (the client's, or
one made from the header fields) has recipients, not too many, all of them addresses, and
parameters the server supports, and the message fits the server's SIZE and the gateway's
bound. The message is read as the upstream stores it (BODY.PEEK[], the Email's blob) and its
Bcc fields are cut from the octets (gateway.mime.bcc); nothing else of it changes.

Reading it takes upstream connections one piece at a time (translators.email.download) and
gives each back at once, so no IMAP connection is held while the SMTP server is talked to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.cache.blobs import BlobVanished
from gateway.cache.submissions import SubmissionRecord
from gateway.env import RequestEnv
from gateway.jmap.errors import SetError
from gateway.jmap.protocol import is_valid_id
from gateway.jmap.standard import InvalidValue, as_utc_date
from gateway.mime.bcc import without_bcc
from gateway.mime.headers import RawHeader, as_message_ids, parse_header_block
from gateway.offload import sized
from gateway.smtp.envelope import Envelope
from gateway.translators.email.blob_ids import BlobRef
from gateway.translators.email.blob_read import message_limit
from gateway.translators.email.download import open_download
from gateway.translators.identity.lookup import IdentityRecord, identity_by_id, may_send_from
from gateway.translators.submission.envelope import (
    SubmissionEnvelope,
    WireFacts,
    from_addresses,
    from_headers,
    invalid_recipients,
    parse_envelope,
    smtp_envelope,
)

# RFC 8621 7: what a create may set; the rest is server-set (RFC 8620 5.3 invalidProperties).
# sendAt is server-set too, but a client that gives one asks for the send at that time, as
# HOLDUNTIL does (RFC 4865): the server then sets exactly that value, so it is taken as a wish.
SETTABLE = frozenset({"identityId", "emailId", "envelope", "sendAt"})
SERVER_SET = frozenset(
    {"id", "threadId", "undoStatus", "deliveryStatus", "dsnBlobIds", "mdnBlobIds"}
)
# RFC 4865 3: HOLDFOR is at most 999,999,999 seconds.
MAX_HOLD_SECONDS = 999_999_999
_HOLD_FOR = re.compile(r"[0-9]{1,9}", re.ASCII)
_HOLD_UNTIL = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


@dataclass(frozen=True)
class Prepared:
    """A create that passed every check and can be sent: now (deliver.py) or at
    ``hold_until`` (the hold part). ``record`` is the submission as it will be stored
    (its undoStatus, sendAt and deliveryStatus are set by whoever sends or holds it),
    ``envelope`` and ``message`` exactly what goes to the SMTP server."""

    record: SubmissionRecord
    envelope: Envelope
    message: bytes
    # tooLarge's maxSize (RFC 8621 7.5) for a refusal at send time.
    max_size: int
    # RFC 4865 HOLDFOR/HOLDUNTIL of the client's mailFrom, when it asked for a delay.
    hold_until: datetime | None = None


async def prepare(env: RequestEnv, create_args: Mapping[str, Any]) -> Prepared | SetError:
    """The create's checks, then the record, envelope and octets to send; or its SetError.

    ``emailId`` is an id: a ``#creationId`` is resolved by the caller (set.py).
    """
    try:
        return await _prepare(env, create_args)
    except SetError as error:
        return error


async def _prepare(env: RequestEnv, args: Mapping[str, Any]) -> Prepared:
    _check_properties(args)
    identity = await identity_by_id(env, args["identityId"])
    if identity is None:
        raise SetError.invalid_properties(["identityId"], "no such identity")
    await env.catch_up()
    email = (await env.index.emails.records([args["emailId"]])).get(args["emailId"])
    if email is None or not email.visible:
        raise SetError.invalid_properties(["emailId"], "no such email")
    extensions = env.services.smtp_extensions
    bound = message_limit(env)
    max_size = min(bound, extensions.size) if extensions.size else bound
    if email.size > bound:
        raise _too_large(max_size)
    stored = await _read_message(env, email.id, bound, max_size)
    message = await sized(len(stored), without_bcc, stored)
    if len(message) > max_size:
        raise _too_large(max_size)
    # Bcc is read before it is cut: 7.5 sends to its addresses too.
    headers = await sized(len(stored), parse_header_block, stored)
    for address in from_addresses(headers):
        # RFC 8621 7.5 forbiddenFrom: the From field, by the operator's sender policy.
        if not may_send_from(env, address):
            raise SetError("forbiddenFrom", f"this user may not send as {address}")
    envelope = _envelope(env, args.get("envelope"), headers, identity)
    _check_recipients(env, envelope)
    store = env.index.submissions
    submission_id = await store.new_id()
    facts = WireFacts(
        size=len(message),
        eight_bit=not message.isascii(),
        utf8_header=any(not (h.name + h.value).isascii() for h in headers),
        envid=submission_id,
    )
    wire = smtp_envelope(envelope, extensions, facts)
    record = SubmissionRecord(
        id=submission_id,
        identity_id=identity.id,
        email_id=email.id,
        thread_id=email.thread_id,
        envelope=envelope.to_json(),
        send_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        undo_status="pending",
        delivery_status=None,
        message_id=_message_id(headers),
        envid=submission_id if "ENVID" in wire.parameters else None,
    )
    return Prepared(record, wire, message, max_size, _hold_until(envelope, args.get("sendAt")))


def _check_properties(args: Mapping[str, Any]) -> None:
    server_set = sorted(SERVER_SET & args.keys())
    if server_set:
        raise SetError.invalid_properties(server_set, "these properties are set by the server")
    unknown = sorted(args.keys() - SETTABLE)
    if unknown:
        raise SetError.invalid_properties(unknown, "no such properties")
    bad = [name for name in ("identityId", "emailId") if not _is_id(args.get(name))]
    if bad:
        raise SetError.invalid_properties(bad, "required, and must be an Id")


def _is_id(value: object) -> bool:
    return isinstance(value, str) and is_valid_id(value)


def _too_large(max_size: int) -> SetError:
    # RFC 8621 7.5: tooLarge MUST carry maxSize.
    return SetError(
        "tooLarge",
        f"the message is larger than the {max_size} octets that may be sent",
        {"maxSize": max_size},
    )


async def _read_message(env: RequestEnv, email_id: str, bound: int, max_size: int) -> bytes:
    """The message as stored, whole (at most ``bound`` octets, else tooLarge with
    ``max_size``); gone meanwhile: no email."""
    download = await open_download(env, BlobRef(email_id, None))
    if download is None:
        raise SetError.invalid_properties(["emailId"], "no such email")
    data = bytearray()
    try:
        async for chunk in download.chunks:
            data += chunk
            if len(data) > bound:
                raise _too_large(max_size)
    except BlobVanished:
        raise SetError.invalid_properties(["emailId"], "the email was removed") from None
    return bytes(data)


def _envelope(
    env: RequestEnv, given: object, headers: list[RawHeader], identity: IdentityRecord
) -> SubmissionEnvelope:
    """The client's envelope, its mailFrom allowed by the policy; else the one 7.5 makes."""

    if given is None:
        # RFC 8621 7.5 "not allowed by the Identity": an address the operator's sender policy
        # does not let this user send from (every Identity's own email passes it, B).
        made = from_headers(headers, identity.email, lambda a: may_send_from(env, a))
        if "*" in made.mail_from.email.rpartition("@")[0]:
            # RFC 8621 6.1: a "*@domain" Identity names no address to send from itself.
            raise SetError(
                "forbiddenMailFrom",
                "the message's Sender/From may not be used and the Identity is a wildcard: "
                "give the envelope",
            )
        if not may_send_from(env, made.mail_from.email):
            # The Identity's own email stands in for a refused Sender/From, but an Identity
            # kept from before the policy changed (or written into METADATA by another
            # client) is not the policy's word either.
            raise SetError(
                "forbiddenMailFrom", f"this user may not send from {made.mail_from.email}"
            )
        return made
    envelope = parse_envelope(given)
    mail_from = envelope.mail_from.email
    if mail_from and not may_send_from(env, mail_from):
        raise SetError("forbiddenMailFrom", f"this user may not send from {mail_from}")
    return envelope


def _check_recipients(env: RequestEnv, envelope: SubmissionEnvelope) -> None:
    """RFC 8621 7.5: noRecipients, tooManyRecipients (with maxRecipients) and
    invalidRecipients (with the addresses), before anything is sent."""
    if not envelope.rcpt_to:
        raise SetError("noRecipients", "the envelope has no recipients")
    most = env.services.settings.max_recipients
    if len(envelope.rcpt_to) > most:
        raise SetError(
            "tooManyRecipients",
            f"at most {most} recipients per submission",
            {"maxRecipients": most},
        )
    invalid = invalid_recipients(envelope)
    if invalid:
        raise SetError("invalidRecipients", "not email addresses", {"invalidRecipients": invalid})


def _message_id(headers: list[RawHeader]) -> str | None:
    """The sent message's Message-ID, which a DSN names (RFC 3464 2.2.x, F matches by it)."""
    fields = [h for h in headers if h.name.lower() == "message-id"]
    ids = as_message_ids(fields[0].value) if fields else None
    return ids[0] if ids else None


def _hold_until(envelope: SubmissionEnvelope, send_at: object) -> datetime | None:
    """When RFC 4865 HOLDFOR (seconds) or HOLDUNTIL (a date-time), or the client's sendAt,
    asks to send it."""
    mail_from = envelope.mail_from
    hold_for = mail_from.parameter("HOLDFOR")
    hold_until = mail_from.parameter("HOLDUNTIL")
    if send_at is not None:
        if mail_from.has("HOLDFOR") or mail_from.has("HOLDUNTIL"):
            raise SetError.invalid_properties(
                ["envelope", "sendAt"], "give either sendAt or HOLDFOR/HOLDUNTIL, not both"
            )
        try:
            return as_utc_date(send_at)
        except InvalidValue:
            raise SetError.invalid_properties(["sendAt"], "sendAt must be a UTCDate") from None
    if not (mail_from.has("HOLDFOR") or mail_from.has("HOLDUNTIL")):
        return None
    if mail_from.has("HOLDFOR") and mail_from.has("HOLDUNTIL"):
        raise _bad_hold("HOLDFOR and HOLDUNTIL exclude each other (RFC 4865 4)")
    if hold_for is not None:
        # RFC 4865 4: 1*9DIGIT (str.isdigit would take "²", which int() refuses).
        if not _HOLD_FOR.fullmatch(hold_for):
            raise _bad_hold(f"HOLDFOR is a number of seconds up to {MAX_HOLD_SECONDS}")
        return datetime.now(UTC) + timedelta(seconds=int(hold_for))
    # RFC 4865 4: an RFC 3339 date-time, with Z or an offset.
    if hold_until is None or not _HOLD_UNTIL.fullmatch(hold_until):
        raise _bad_hold("HOLDUNTIL must be an RFC 3339 date-time")
    try:
        return datetime.fromisoformat(hold_until.upper()).astimezone(UTC)
    except ValueError:
        raise _bad_hold("HOLDUNTIL is not a date") from None


def _bad_hold(why: str) -> SetError:
    return SetError.invalid_properties(["envelope"], f"envelope: {why}")


__all__ = ["Prepared", "prepare"]
