"""What a correct Email/get (RFC 8621 4.1) returns for a raw message, by the stdlib alone.

The gateway parses mail with its own code; tests compare it with this module, which uses
only the standard library (``email`` with ``policy.default``, ``email.utils``,
``email.header``) and never imports ``gateway``, so that one implementation's mistake is not
copied into the other's expectations.

``expected(raw)`` returns these properties (the JMAP names), plus ``uncertain``:

- ``subject``: the last Subject field as RFC 8621 4.1.2.2 Text (unfolded, encoded words
  decoded, NFC), or None. RFC 8621 4.1.3: a convenience property reads the last instance.
- ``from``, ``to``, ``cc``, ``replyTo``, ``sender``: RFC 8621 4.1.2.3 Addresses, a list of
  ``{"name": str | None, "email": str}`` with groups flattened, or None without the field.
- ``messageId``, ``inReplyTo``, ``references``: RFC 8621 4.1.2.5 MessageIds, ids without
  angle brackets, or None.
- ``sentAt``: the Date field as RFC 3339 with the field's own offset (zero offsets come out
  as "+00:00"; compare instants and offsets, not strings, where that matters), or None when
  the field is absent or cannot be parsed.
- ``size``: ``len(raw)``.
- ``textBodyText``: the decoded text of the first text/plain part that RFC 8621 4.1.4 treats
  as inline (so not an attachment), CRLF as LF; None when there is none (an HTML-only
  message, whose ``textBody`` holds the HTML part instead).
- ``attachmentNames``: the decoded names of the parts with ``Content-Disposition:
  attachment``, in order (None for a part without a name). This is not RFC 8621's
  ``attachments``, which also lists, for instance, the images of a multipart/related.
- ``hasAttachment``: true when some part has ``Content-Disposition: attachment``, or has no
  disposition and is neither a body text (RFC 8621 4.1.4 isInline for text/plain and
  text/html) nor an image, audio or video part.

Parts of an attached message (message/rfc822 and the like) are never looked into: RFC 8621
lists the attached message as one part.

``uncertain`` is a set of property names whose value a test should not compare, because the
stdlib's answer is only one of several a correct server may give:

- a header field with octets that are not UTF-8 (RFC 6532 allows UTF-8 only; a server may
  guess a charset or replace them), with an encoded word in an unknown charset (RFC 8621
  4.1.2.2 leaves it undecoded, the stdlib decodes it as ASCII), with one whose octets are not
  valid in its charset or whose base64 is bad, or with one glued to other text (RFC 2047 5
  forbids decoding it, the stdlib decodes it);
- an address field in which the stdlib's parser records a defect other than obsolete syntax
  (RFC 8621 4.1.2.3 asks for a best effort, which differs between parsers);
- a message-id field with text outside angle brackets or an id without "@" (RFC 8621
  4.1.2.5 says null when it does not parse; lenient servers return the text);
- a Date without a usable zone ("-0000" or none: RFC 5322 3.3 says the zone is unknown);
- a text body whose charset is missing, unknown or wrong for its octets, or whose charset
  label the WHATWG Encoding Standard reads as a superset (ISO-8859-1 as windows-1252,
  Shift_JIS as windows-31j, ...) that decodes its octets differently, or whose
  quoted-printable or base64 is malformed, or whose transfer encoding is unknown: RFC 8621
  4.1.4 lets the server detect a charset or substitute U+FFFD, each giving other text;
- ``hasAttachment`` when it rests on an image, audio or video part without a disposition,
  which RFC 8621 4.1.4 lets a server count or ignore.
"""

from __future__ import annotations

import binascii
import codecs
import re
import unicodedata
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.errors import HeaderParseError, ObsoleteHeaderDefect
from email.header import decode_header
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

ADDRESS_FIELDS = {
    "from": "From",
    "to": "To",
    "cc": "Cc",
    "replyTo": "Reply-To",
    "sender": "Sender",
}
MESSAGE_ID_FIELDS = {
    "messageId": "Message-ID",
    "inReplyTo": "In-Reply-To",
    "references": "References",
}

# WHATWG Encoding Standard: labels that browsers (and gateways following them) decode as a
# superset. Keys are Python codec names (codecs.lookup(label).name).
_WHATWG_SUPERSETS = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "shift_jis": "cp932",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
}
_KNOWN_TRANSFER_ENCODINGS = {"7bit", "8bit", "binary", "quoted-printable", "base64"}
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_MSG_ID = re.compile(r"<([^<>]*)>")
_COMMENT = re.compile(r"\([^()]*\)")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_BAD_QP = re.compile(r"=(?![0-9A-Fa-f]{2}|[ \t]*\r?\n|[ \t]*$)")


def expected(raw: bytes) -> dict[str, Any]:
    """The Email/get properties of ``raw`` and the set of those a test should not compare."""
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    uncertain: set[str] = set()
    result: dict[str, Any] = {"size": len(raw)}

    def note(name: str, value: object, reliable: bool) -> None:
        result[name] = value
        if not reliable:
            uncertain.add(name)

    note("subject", *subject(message))
    for name, field in ADDRESS_FIELDS.items():
        note(name, *addresses(message, field))
    for name, field in MESSAGE_ID_FIELDS.items():
        note(name, *message_ids(message, field))
    note("sentAt", *sent_at(message))
    note("textBodyText", *text_body_text(message))
    result["attachmentNames"] = attachment_names(message)
    note("hasAttachment", *has_attachment(message))
    result["uncertain"] = uncertain
    return result


# --- Header fields ---------------------------------------------------------------------------


def last_raw(message: EmailMessage, field: str) -> str | None:
    """The raw value of the last instance of ``field`` (RFC 8621 4.1.3), folding kept."""
    values = [value for name, value in message.raw_items() if name.lower() == field.lower()]
    return str(values[-1]) if values else None


def as_unicode(raw: str) -> tuple[str, bool]:
    """Raw octets read as UTF-8 (RFC 6532); not reliable when they are not UTF-8.

    The stdlib keeps 8-bit octets it could not decode as lone surrogates (surrogateescape);
    encoding with that handler gives the octets back, next to any text it did decode.
    """
    octets = raw.encode("utf-8", "surrogateescape")
    try:
        return octets.decode("utf-8"), True
    except UnicodeDecodeError:
        return octets.decode("utf-8", "replace"), False


def unfold(value: str) -> str:
    """RFC 5322 2.2.3: unfolding removes each CRLF that is followed by white space."""
    return _FOLD.sub("", value)


def encoded_words_clean(value: str) -> bool:
    """Whether every encoded word is well placed, well encoded and in a known charset."""
    for match in _ENCODED_WORD.finditer(value):
        before = value[match.start() - 1] if match.start() else " "
        after = value[match.end()] if match.end() < len(value) else " "
        if not (before.isspace() or before in '("') or not (after.isspace() or after in ')"'):
            return False
    try:
        chunks = decode_header(value)
    except HeaderParseError:
        return False
    for chunk, charset in chunks:
        if charset is not None and isinstance(chunk, bytes):
            try:
                chunk.decode(charset)
            except (LookupError, UnicodeDecodeError):
                return False
    return True


def header_text(message: EmailMessage, field: str) -> tuple[str | None, bool]:
    """The last value of ``field`` as unfolded Unicode (None if absent), and reliability."""
    raw = last_raw(message, field)
    if raw is None:
        return None, True
    text, reliable = as_unicode(raw)
    text = unfold(text)
    return text, reliable and encoded_words_clean(text)


def subject(message: EmailMessage) -> tuple[str | None, bool]:
    """RFC 8621 4.1.2.2 Text form of the last Subject field."""
    text, reliable = header_text(message, "Subject")
    if text is None:
        return None, True
    decoded = str(policy.default.header_factory("subject", text))
    return unicodedata.normalize("NFC", decoded), reliable


def addresses(message: EmailMessage, field: str) -> tuple[list[dict[str, Any]] | None, bool]:
    """RFC 8621 4.1.2.3 Addresses form: mailboxes of the last instance, groups flattened."""
    text, reliable = header_text(message, field)
    if text is None:
        return None, True
    try:
        # An AddressHeader of email.headerregistry, whose .addresses flattens groups.
        header = policy.default.header_factory(field, text)
        found = [(address.display_name, address.addr_spec) for address in header.addresses]
        # RFC 5322 4: obsolete syntax (such as empty list elements) must be accepted.
        defects = any(not isinstance(d, ObsoleteHeaderDefect) for d in header.defects)
    except Exception:  # the stdlib's parser has raised on hostile input before
        return [_address(name, email) for name, email in getaddresses([text])], False
    return [_address(name, email) for name, email in found], reliable and not defects


def _address(name: str, email: str) -> dict[str, Any]:
    """RFC 8621 4.1.2.3 EmailAddress: an empty display name is null; names are NFC."""
    name = name.strip()
    return {"name": unicodedata.normalize("NFC", name) if name else None, "email": email}


def message_ids(message: EmailMessage, field: str) -> tuple[list[str] | None, bool]:
    """RFC 8621 4.1.2.5 MessageIds form: the msg-ids without angle brackets, or None."""
    text, reliable = header_text(message, field)
    if text is None:
        return None, True
    ids = ["".join(found.split()) for found in _MSG_ID.findall(text)]
    outside = _COMMENT.sub("", _MSG_ID.sub(" ", text)).strip()
    reliable = reliable and not outside and all("@" in found for found in ids)
    return (ids or None), reliable


def sent_at(message: EmailMessage) -> tuple[str | None, bool]:
    """RFC 8621 4.1.2.6 Date form of the last Date field, keeping its offset."""
    text, reliable = header_text(message, "Date")
    if text is None:
        return None, True
    try:
        when = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError):  # TypeError: Python before 3.12 on unparseable input
        return None, reliable
    if when.tzinfo is None:
        return None, False
    return when.isoformat(), reliable


# --- Body parts ------------------------------------------------------------------------------


def leaves(message: EmailMessage) -> Iterator[tuple[EmailMessage, int, str]]:
    """Non-multipart parts in order, each with its index in its parent and the parent's subtype.

    The top part has index 0 and parent "". Attached messages are leaves (RFC 8621 4.1.4).
    """

    def walk(
        part: EmailMessage, index: int, parent: str
    ) -> Iterator[tuple[EmailMessage, int, str]]:
        if part.get_content_maintype() == "multipart" and part.is_multipart():
            subtype = part.get_content_subtype()
            for child_index, child in enumerate(part.iter_parts()):
                assert isinstance(child, EmailMessage)
                yield from walk(child, child_index, subtype)
        else:
            yield part, index, parent

    return walk(message, 0, "")


def is_body_text(part: EmailMessage, index: int, parent: str) -> bool:
    """RFC 8621 4.1.4 isInline for text/plain and text/html parts."""
    if part.get_content_type() not in ("text/plain", "text/html"):
        return False
    if part.get_content_disposition() == "attachment":
        return False
    return index == 0 or (parent != "related" and not part.get_filename())


def text_body_text(message: EmailMessage) -> tuple[str | None, bool]:
    """The decoded text of the first inline text/plain part, CRLF as LF."""
    for part, index, parent in leaves(message):
        if part.get_content_type() == "text/plain" and is_body_text(part, index, parent):
            text, reliable = decode_text(part)
            return text.replace("\r\n", "\n"), reliable
    return None, True


def decode_text(part: EmailMessage) -> tuple[str, bool]:
    """Transfer decoding by the stdlib, then the charset; reliability as the module says."""
    octets, reliable = decode_transfer(part)
    label = part.get_content_charset()
    if label is None:
        return octets.decode("ascii", "replace"), reliable and octets.isascii()
    try:
        codec = codecs.lookup(label).name
    except LookupError:
        return octets.decode("ascii", "replace"), False
    try:
        text = octets.decode(codec)
    except UnicodeDecodeError:
        return octets.decode(codec, "replace"), False
    superset = _WHATWG_SUPERSETS.get(codec)
    if superset is not None and octets.decode(superset, "replace") != text:
        reliable = False
    return text, reliable


def decode_transfer(part: EmailMessage) -> tuple[bytes, bool]:
    """The part's decoded octets, and whether its transfer encoding was well formed."""
    encoding = str(part.get("content-transfer-encoding", "7bit")).strip().lower()
    body = part.get_payload()
    assert isinstance(body, str)
    octets = part.get_payload(decode=True)
    assert isinstance(octets, bytes)
    if encoding == "base64":
        try:
            binascii.a2b_base64("".join(body.split()), strict_mode=True)
        except binascii.Error:
            return octets, False
    elif encoding == "quoted-printable" and _BAD_QP.search(body):
        return octets, False
    return octets, encoding in _KNOWN_TRANSFER_ENCODINGS


def attachment_names(message: EmailMessage) -> list[str | None]:
    """Names of the parts with Content-Disposition: attachment, RFC 2231 and 2047 decoded."""
    return [
        _filename(part)
        for part, _, _ in leaves(message)
        if part.get_content_disposition() == "attachment"
    ]


def _filename(part: EmailMessage) -> str | None:
    """filename, else the Content-Type name; raw 8-bit octets read as UTF-8 (RFC 6532)."""
    name = part.get_filename()
    return None if name is None else as_unicode(name)[0]


def has_attachment(message: EmailMessage) -> tuple[bool, bool]:
    """hasAttachment as the module docstring defines it, and whether it is certain."""
    found = False
    reliable = True
    for part, index, parent in leaves(message):
        disposition = part.get_content_disposition()
        if disposition == "attachment":
            return True, True
        if disposition is None and not is_body_text(part, index, parent):
            if part.get_content_maintype() in ("image", "audio", "video"):
                reliable = False
            else:
                found = True
    return found, reliable or found
