"""Delivery status notifications (RFC 3464) read back into what a sender's records need.

A DSN is a ``multipart/report`` (RFC 6522) whose second part is ``message/delivery-status``
(or RFC 6533's ``message/global-delivery-status``): a block of per-message fields, then one
block per recipient, blocks separated by blank lines and written like header fields. The
third part, when there is one, returns the message the report is about, whole
(``message/rfc822``) or its header only (``text/rfc822-headers``); its Message-ID ties the
report to a sent message when the report carries no envelope id.

Anyone can send a user a message that looks like a report, so this reads strangers' text:
the MIME tree comes from :func:`gateway.mime.bodyparts.body_structure` (bounded, and never
raising), the blocks from :func:`gateway.mime.headers.parse_header_block`, and only the first
REPORT_OCTETS of the message are looked at. Whatever does not read as a delivery report gives
None, never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from gateway.mime.bodyparts import BodyPart, body_structure, part_content
from gateway.mime.headers import RawHeader, as_message_ids, as_text, parse_header_block

# Octets of a message read for its report. The report's fields come first (its second part
# follows a short human-readable one), and the returned message's header right after them;
# the rest is at most that message's body, which is not needed.
REPORT_OCTETS: Final = 256 * 1024

# Recipient blocks read of one report; later ones are ignored. Postfix accepts at most 1,000
# recipients per message by default (smtpd_recipient_limit), so a report of one of its
# transactions never lists more.
MAX_RECIPIENTS: Final = 1000

# Characters of a field value kept (an address, a diagnostic text): far more than any SMTP
# reply line (RFC 5321 4.5.3.1.5: 512 octets) or address (4.5.3.1.3: 256).
VALUE_CHARS: Final = 2048

REPORT_TYPES: Final = frozenset({"message/delivery-status", "message/global-delivery-status"})
RETURNED_MESSAGE_TYPES: Final = frozenset({"message/rfc822", "message/global"})
RETURNED_HEADER_TYPES: Final = frozenset({"text/rfc822-headers", "message/global-headers"})

# RFC 3464 2.3.3: the Action field's values.
ACTIONS: Final = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})
# RFC 3464 2.3.4 / RFC 3463 2: class "." subject "." detail.
_STATUS: Final = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
# RFC 3464 2.1.2: blocks are separated by an empty line (lines of white space count as empty).
_BLOCK_SEPARATOR: Final = re.compile(rb"\r?\n[ \t]*\r?\n")
# A Diagnostic-Code of type smtp whose text starts with a reply code (RFC 5321 4.2).
_SMTP_REPLY: Final = re.compile(r"[245][0-9]{2}(?:[ -]|$)")
# The basic reply code an enhanced status's class stands for when no reply is given
# (RFC 3463 3.1: 2 success, 4 persistent transient failure, 5 permanent failure).
_CLASS_REPLIES: Final = {"2": "250", "4": "451", "5": "550"}


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """One recipient's block (RFC 3464 2.3).

    ``final_recipient`` and ``original_recipient`` are the addresses without their type
    ("rfc822;"), ``action`` in lower case, ``status`` the bare enhanced code ("5.1.1"),
    ``diagnostic`` the whole Diagnostic-Code value ("smtp; 550 5.1.1 ...") unfolded.
    """

    final_recipient: str
    original_recipient: str | None
    action: str
    status: str
    diagnostic: str | None

    @property
    def smtp_reply(self) -> str:
        """The reply to show as RFC 8621 7's smtpReply: the remote server's own when the
        diagnostic is an SMTP reply, else the status's class as a reply code and the status
        (with the diagnostic's text, of another type, after it)."""
        kind, _, text = (self.diagnostic or "").partition(";")
        text = text.strip()
        if kind.strip().lower() == "smtp" and _SMTP_REPLY.match(text):
            return text
        reply = f"{_CLASS_REPLIES[self.status[0]]} {self.status}"
        return f"{reply} {text}" if text else reply


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A report's per-message envelope id (RFC 3464 2.2.1), the returned message's
    Message-ID (without "<>"), and its recipients in the report's order."""

    envid: str | None
    message_id: str | None
    recipients: tuple[RecipientReport, ...]


def parse_report(message: bytes) -> DeliveryReport | None:
    """The delivery report a message holds; None if it is none (or nothing of it reads).

    Only a top-level ``multipart/report`` counts, and its first delivery-status part: a
    report forwarded inside another message is that message's content, not a report to
    this user. A report without a single readable recipient block is no report.
    """
    data = message[:REPORT_OCTETS]
    root = body_structure(data)
    if root.type != "multipart/report":
        return None
    status_part = next((p for p in root.sub_parts if p.type in REPORT_TYPES), None)
    if status_part is None:
        return None
    blocks = _blocks(part_content(data, status_part))
    # RFC 3464 2.1: the per-message block comes first; some software leaves it out.
    per_message = blocks.pop(0) if blocks and not _field(blocks[0], "final-recipient") else []
    recipients = tuple(r for r in (_recipient(b) for b in blocks[:MAX_RECIPIENTS]) if r is not None)
    if not recipients:
        return None
    envid = _field(per_message, "original-envelope-id")
    returned = _returned_message_id(data, root.sub_parts, status_part)
    return DeliveryReport(envid or None, returned, recipients)


def _blocks(content: bytes) -> list[list[RawHeader]]:
    """The report's field blocks: the per-message one first, then one per recipient; empty
    blocks (several blank lines in a row) are skipped."""
    blocks: list[list[RawHeader]] = []
    for chunk in _BLOCK_SEPARATOR.split(content.lstrip(b"\r\n")):
        fields = parse_header_block(chunk)
        if fields:
            blocks.append(fields)
        if len(blocks) > MAX_RECIPIENTS:
            break
    return blocks


def _field(block: list[RawHeader], name: str) -> str | None:
    """The first field called ``name`` (lower case) unfolded, at most VALUE_CHARS long."""
    for field in block:
        if field.name.lower() == name:
            return " ".join(as_text(field.value).split())[:VALUE_CHARS]
    return None


def _recipient(block: list[RawHeader]) -> RecipientReport | None:
    """RFC 3464 2.3: Final-Recipient, Action and Status are required; a block missing one,
    or with an action or status outside the RFC's, is skipped."""
    final = _address(_field(block, "final-recipient"))
    action = (_field(block, "action") or "").lower()
    status = _STATUS.fullmatch((_field(block, "status") or "").partition(" ")[0])
    if not final or action not in ACTIONS or status is None:
        return None
    return RecipientReport(
        final,
        _address(_field(block, "original-recipient")),
        action,
        status.group(),
        _field(block, "diagnostic-code"),
    )


def _address(value: str | None) -> str | None:
    """RFC 3464 2.3.1/2.3.2: ``address-type ";" generic-address``; the address, "<>" removed
    (some MTAs write them). A value without a type is taken as the address itself."""
    if value is None:
        return None
    address = value.partition(";")[2].strip() if ";" in value else value.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    return address or None


def _returned_message_id(
    data: bytes, parts: tuple[BodyPart, ...], status_part: BodyPart
) -> str | None:
    """The Message-ID of the message returned after the report part (RFC 3462 / RFC 6522:
    the optional third part)."""
    after = parts[parts.index(status_part) + 1 :]
    for part in after:
        header: list[RawHeader] | None = None
        if part.type in RETURNED_MESSAGE_TYPES and part.message is not None:
            inner = part.message
            header = [RawHeader(name, value) for name, value in inner.headers]
        elif part.type in RETURNED_HEADER_TYPES:
            header = parse_header_block(part_content(data, part))
        if header is not None:
            raw = next((f.value for f in header if f.name.lower() == "message-id"), None)
            ids = as_message_ids(raw) if raw is not None else None
            return ids[0] if ids else None
    return None
