"""The RFC 5322 message of an ``Email/set`` create (RFC 8621 4.6), ready for IMAP APPEND.

:func:`compose` validates the client's Email object against the constraints of RFC 8621 4.6
and writes the message with the stdlib ``email`` package: header fields are written by
:mod:`gateway.mime.header_writer`, parameters RFC 2231-encoded by ``add_header``, bodies
encoded by ``binascii``/``base64`` and the tree serialised by its ``BytesGenerator`` with
CRLF line ends.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.generator import BytesGenerator
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime
from io import BytesIO
from typing import Any, Final, TypeVar

from gateway.mime.bodyparts import BODY_PART_PROPERTIES
from gateway.mime.header_writer import (
    CRLF,
    MAX_LINE,
    POLICY,
    URI,
    Check,
    ComposeError,
    Field,
    Invalid,
    Verbatim,
    check_lines,
    flag_duplicates,
    header_fields,
    text_value,
)
from gateway.mime.headers import CONVENIENCE_PROPERTIES, HeaderSpec, parse_header_spec
from gateway.mime.limits import MAX_DEPTH

__all__ = ["CONTENT_PROPERTIES", "ComposeError", "compose", "referenced_blobs"]

_BODY_PROPERTIES: Final = frozenset(
    {"bodyStructure", "textBody", "htmlBody", "attachments", "bodyValues"}
)

# The Email properties that describe the message itself, besides every "header:" property.
# All are immutable (RFC 8621 4.1): an update naming one of them is invalid.
CONTENT_PROPERTIES: Final = frozenset({"headers", *CONVENIENCE_PROPERTIES, *_BODY_PROPERTIES})

# Validated by the caller, not part of the message.
_IGNORED: Final = frozenset({"mailboxIds", "keywords", "receivedAt"})
# RFC 8621 4.1.1 and 4.1.4: server-set, so a create must not give them.
_SERVER_SET: Final = frozenset({"id", "blobId", "threadId", "size", "preview", "hasAttachment"})
_FLAT_BODY: Final = ("textBody", "htmlBody", "attachments")
_BODY_VALUE_PROPERTIES: Final = frozenset({"value", "isEncodingProblem", "isTruncated"})

# RFC 2045 5.1 token; a media type is token "/" token.
_MIME_WORD: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_TYPE: Final = re.compile(rf"{_MIME_WORD}/{_MIME_WORD}")
_MIME_WORD_ONLY: Final = re.compile(_MIME_WORD)
# RFC 2392 Content-ID: printable ASCII, nothing that ends it.
_CID: Final = re.compile(r"[!#-'*-+\-./0-;=?-~]+")
_LANGUAGE_TAG: Final = re.compile(r"[A-Za-z0-9]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_LINE_BREAK: Final = re.compile(rb"\r\n|\r|\n")

_T = TypeVar("_T")


# --- Blobs -------------------------------------------------------------------------------------


def referenced_blobs(email: Mapping[str, Any]) -> list[str]:
    """Every blobId the parts of a create refer to, first occurrence first.

    The caller fetches these before :func:`compose`; malformed parts are skipped here and
    reported by compose.
    """
    found: list[str] = []
    if isinstance(email, Mapping):
        _collect_blobs(email.get("bodyStructure"), found, 0)
        for key in _FLAT_BODY:
            parts = email.get(key)
            for part in parts if isinstance(parts, list) else ():
                _collect_blobs(part, found, 0)
    return list(dict.fromkeys(found))


def _collect_blobs(part: Any, found: list[str], depth: int) -> None:
    if not isinstance(part, Mapping) or depth > MAX_DEPTH:
        return
    blob_id = part.get("blobId")
    if isinstance(blob_id, str):
        found.append(blob_id)
    children = part.get("subParts")
    for child in children if isinstance(children, list) else ():
        _collect_blobs(child, found, depth + 1)


# --- The top-level Email object ------------------------------------------------------------------


def _top_spec(prop: str, check: Check) -> HeaderSpec | None:
    """The header a top-level property sets, or None (body, ignored, or invalid: noted)."""
    if prop in _IGNORED or prop in _BODY_PROPERTIES:
        return None
    spec = CONVENIENCE_PROPERTIES.get(prop)
    if spec is None and prop.startswith("header:"):
        spec = parse_header_spec(prop)
        if spec is None:
            check.bad(prop, "not a header property, or a form RFC 8621 4.1.2 forbids for it")
        elif spec.name.lower().startswith("content-"):
            # RFC 8621 4.6: Content-* fields belong to the body parts.
            check.bad(prop, "Content-* header fields are set on body parts, not on the Email")
            return None
    elif spec is None:
        check.bad(prop, _top_level_refusal(prop))
    return spec


def _top_level_refusal(prop: str) -> str:
    if prop in _SERVER_SET:
        return "server-set property"
    if prop == "headers":
        return "RFC 8621 4.6: give each header field as its own property, not headers"
    return "unknown property"


def _top_fields(email: Mapping[str, Any], check: Check) -> list[Field]:
    fields: list[Field] = []
    for prop, value in email.items():
        spec = _top_spec(prop, check)
        if spec is not None and value is not None:
            fields.extend(header_fields(spec, value, prop, check))
    return fields


# --- Body parts --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Part:
    """A validated EmailBodyPart: what the renderer needs, nothing JSON."""

    type: str
    content: bytes = b""
    charset: str | None = None
    disposition: str | None = None
    name: str | None = None
    cid: str | None = None
    fields: list[Field] = field(default_factory=list)
    sub_parts: list[_Part] = field(default_factory=list)

    @property
    def is_multipart(self) -> bool:
        return self.type.startswith("multipart/")

    def default_disposition(self, disposition: str) -> None:
        """Set a disposition unless one is given, by property or by header field."""
        given = any(header.name.lower() == "content-disposition" for header in self.fields)
        if self.disposition is None and not given:
            self.disposition = disposition


def _matching(pattern: re.Pattern[str], expected: str) -> Callable[[Any], str]:
    """A reader of a string property that must match ``pattern``."""

    def read(value: Any) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise Invalid(f"{expected} is expected")
        return value

    return read


_media_type: Final = _matching(_MEDIA_TYPE, "a media type, type/subtype (RFC 2045 5.1)")
_token: Final = _matching(_MIME_WORD_ONLY, "a token (RFC 2045 5.1)")
_cid: Final = _matching(_CID, "a Content-ID without angle brackets (RFC 2392)")
_location: Final = _matching(URI, "a URI without spaces (RFC 2557)")


def _name(value: Any) -> str:
    return text_value(value, "a name")


def _language(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise Invalid("a list of language tags (RFC 3282) is expected")
    if not all(isinstance(tag, str) and _LANGUAGE_TAG.fullmatch(tag) for tag in value):
        raise Invalid("a language tag is like en or pt-BR (RFC 5646)")
    return value


@dataclass(slots=True)
class _BodyValue:
    text: str
    used: bool = False


def _body_values(value: Any, check: Check) -> dict[str, _BodyValue]:
    """bodyValues by partId; RFC 8621 4.6: isEncodingProblem and isTruncated false or omitted."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        check.bad("bodyValues", "an object of EmailBodyValue by partId is expected")
        return {}
    values: dict[str, _BodyValue] = {}
    for part_id, entry in value.items():
        try:
            values[part_id] = _BodyValue(_body_value(entry))
        except Invalid as error:
            check.bad(f"bodyValues/{part_id}", str(error))
    return values


def _body_value(entry: Any) -> str:
    if not isinstance(entry, Mapping) or not set(entry) <= _BODY_VALUE_PROPERTIES:
        raise Invalid("an EmailBodyValue has value, isEncodingProblem and isTruncated")
    if entry.get("isEncodingProblem") or entry.get("isTruncated"):
        raise Invalid("isEncodingProblem and isTruncated must be false or omitted")
    text = entry.get("value")
    if not isinstance(text, str):
        raise Invalid("value must be a string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid("value is not Unicode text (lone surrogates)") from None
    return text


@dataclass(slots=True)
class _PartReader:
    """Turns EmailBodyPart objects into _Part, noting every problem in ``check``."""

    check: Check
    values: dict[str, _BodyValue]

    def read(self, obj: Any, path: str, *, flat: bool, depth: int = 0) -> _Part:
        """One part; a part of textBody, htmlBody or attachments (``flat``) has no subParts."""
        if not isinstance(obj, Mapping) or depth > MAX_DEPTH:
            self.check.bad(path, "an EmailBodyPart object is expected")
            return _Part("text/plain")
        self._check_keys(obj, path)
        part = _Part(self._type(obj, path, flat=flat))
        self._read_headers(obj, path, part)
        if part.is_multipart and not flat:
            self._read_children(obj, path, part, depth)
        else:
            self._read_leaf(obj, path, part, flat=flat)
        return part

    def _check_keys(self, obj: Mapping[str, Any], path: str) -> None:
        for key in obj:
            if key == "headers":
                self.check.bad(f"{path}/headers", "RFC 8621 4.6: use header: properties")
            elif key not in BODY_PART_PROPERTIES and not key.startswith("header:"):
                self.check.bad(f"{path}/{key}", "unknown EmailBodyPart property")

    def _type(self, obj: Mapping[str, Any], path: str, *, flat: bool) -> str:
        """The given type, else what the content implies (RFC 8621 sets no default)."""
        given = self.check.value(obj, path, "type", _media_type)
        if given is not None:
            return given.lower()
        if obj.get("subParts") is not None and not flat:
            return "multipart/mixed"
        return "text/plain" if obj.get("partId") is not None else "application/octet-stream"

    def _read_headers(self, obj: Mapping[str, Any], path: str, part: _Part) -> None:
        """Content-* from the properties, then the header: properties, then duplicates."""
        check = self.check
        part.disposition = check.value(obj, path, "disposition", _token)
        part.name = check.value(obj, path, "name", _name)
        part.cid = check.value(obj, path, "cid", _cid)
        part.fields = [
            *self._property_field("Content-ID", f"{path}/cid", part.cid, lambda cid: f" <{cid}>"),
            *self._property_field(
                "Content-Language",
                f"{path}/language",
                check.value(obj, path, "language", _language),
                lambda tags: " " + ", ".join(tags),
            ),
            *self._property_field(
                "Content-Location",
                f"{path}/location",
                check.value(obj, path, "location", _location),
                lambda uri: f" {uri}",
            ),
            *self._header_properties(obj, path),
        ]
        disposition = "disposition" if part.disposition is not None else "name"
        named = [(header.name, header.source) for header in part.fields]
        if part.disposition is not None or part.name is not None:
            named.append(("Content-Disposition", f"{path}/{disposition}"))
        flag_duplicates(named, check)

    def _property_field(
        self, name: str, source: str, value: _T | None, render: Callable[[_T], str]
    ) -> list[Field]:
        if value is None:
            return []
        raw = render(value)
        try:
            check_lines(name, raw)
        except Invalid as error:
            self.check.bad(source, str(error))
            return []
        return [Field(name, raw, source)]

    def _header_properties(self, obj: Mapping[str, Any], path: str) -> list[Field]:
        fields: list[Field] = []
        for key, value in obj.items():
            if not key.startswith("header:") or value is None:
                continue
            spec = parse_header_spec(key)
            refusal = _part_header_refusal(spec)
            if spec is None or refusal:
                self.check.bad(f"{path}/{key}", refusal)
                continue
            fields.extend(header_fields(spec, value, f"{path}/{key}", self.check))
        return fields

    def _read_children(self, obj: Mapping[str, Any], path: str, part: _Part, depth: int) -> None:
        for key in ("partId", "blobId", "charset"):
            if obj.get(key) is not None:
                self.check.bad(f"{path}/{key}", "a multipart part has no content of its own")
        children = obj.get("subParts")
        if not isinstance(children, list) or not children:
            self.check.bad(f"{path}/subParts", "a multipart part needs a list of subParts")
            return
        part.sub_parts = [
            self.read(child, f"{path}/subParts/{index}", flat=False, depth=depth + 1)
            for index, child in enumerate(children)
        ]

    def _read_leaf(self, obj: Mapping[str, Any], path: str, part: _Part, *, flat: bool) -> None:
        if obj.get("subParts") is not None:
            why = "not allowed here" if flat else "only multipart/* parts have subParts"
            self.check.bad(f"{path}/subParts", why)
        if part.is_multipart:
            self.check.bad(f"{path}/type", "a multipart part is not allowed here")
        part_id, blob_id = obj.get("partId"), obj.get("blobId")
        if part_id is not None and blob_id is not None:
            self.check.bad(f"{path}/partId", "give partId or blobId, not both")
        elif part_id is not None:
            self._text_content(obj, path, part)
        elif blob_id is not None:
            self._blob_content(obj, path, part)
        else:
            self.check.bad(path, "a part needs a partId or a blobId")

    def _text_content(self, obj: Mapping[str, Any], path: str, part: _Part) -> None:
        """RFC 8621 4.6: a partId names a bodyValue; charset and size must be omitted."""
        for key in ("charset", "size"):
            if obj.get(key) is not None:
                self.check.bad(f"{path}/{key}", "must be omitted when partId is given")
        if not part.type.startswith("text/"):
            self.check.bad(f"{path}/type", "a part from bodyValues is text/*")
        value = self.values.get(obj["partId"]) if isinstance(obj["partId"], str) else None
        if value is None or value.used:
            why = "used twice" if value else "not in bodyValues"
            self.check.bad(f"{path}/partId", why)
            return
        value.used = True
        part.content = value.text.encode("utf-8")
        part.charset = "utf-8"

    def _blob_content(self, obj: Mapping[str, Any], path: str, part: _Part) -> None:
        """The blob's octets; RFC 8621 4.6: a given size is ignored."""
        blob_id = obj["blobId"]
        if not isinstance(blob_id, str):
            self.check.bad(f"{path}/blobId", "a blob id is a string")
            return
        part.content = self.check.blob(blob_id)
        part.charset = self.check.value(obj, path, "charset", _token)
        if part.charset is None and part.type.startswith("text/"):
            part.charset = _guess_charset(part.content)


def _part_header_refusal(spec: HeaderSpec | None) -> str:
    if spec is None:
        return "not a header property, or a form RFC 8621 4.1.2 forbids for it"
    name = spec.name.lower()
    if name == "content-transfer-encoding":
        return "RFC 8621 4.6: the server chooses the Content-Transfer-Encoding"
    if name == "content-type":
        return "give the Content-Type with type, charset and name"
    return ""


def _guess_charset(content: bytes) -> str | None:
    """A text blob without a charset: "utf-8" if it is UTF-8 beyond ASCII, else unsaid."""
    if content.isascii():
        return None
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "utf-8"


# --- Body structure ----------------------------------------------------------------------------


def _body(email: Mapping[str, Any], check: Check) -> _Part:
    """The root body part: bodyStructure as given, or built from the flat lists."""
    reader = _PartReader(check, _body_values(email.get("bodyValues"), check))
    structure = email.get("bodyStructure")
    flat = [key for key in _FLAT_BODY if email.get(key) is not None]
    if structure is not None and flat:
        for key in ("bodyStructure", *flat):
            check.bad(key, "RFC 8621 4.6: bodyStructure excludes textBody, htmlBody, attachments")
        return _empty_body()
    if structure is not None:
        return reader.read(structure, "bodyStructure", flat=False)
    return _flat_body(email, reader)


def _empty_body() -> _Part:
    return _Part("text/plain", charset="utf-8")


def _flat_body(email: Mapping[str, Any], reader: _PartReader) -> _Part:
    text = _single(email, "textBody", "text/plain", reader)
    html = _single(email, "htmlBody", "text/html", reader)
    attachments = email.get("attachments")
    if attachments is not None and not isinstance(attachments, list):
        reader.check.bad("attachments", "a list of EmailBodyPart is expected")
        attachments = []
    parts = [
        reader.read(part, f"attachments/{index}", flat=True)
        for index, part in enumerate(attachments or ())
    ]
    return _assemble(text, html, parts)


def _single(
    email: Mapping[str, Any], key: str, media_type: str, reader: _PartReader
) -> _Part | None:
    """RFC 8621 4.6: textBody or htmlBody holds one part of its type ([] counts as absent)."""
    parts = email.get(key)
    if parts is None or parts == []:
        return None
    if not isinstance(parts, list) or len(parts) != 1:
        reader.check.bad(key, "exactly one body part is expected")
        return None
    obj = parts[0]
    if isinstance(obj, Mapping) and obj.get("type") is None:
        obj = {**obj, "type": media_type}
    part = reader.read(obj, f"{key}/0", flat=True)
    if part.type != media_type:
        reader.check.bad(f"{key}/0/type", f"must be {media_type}")
    return part


def _assemble(text: _Part | None, html: _Part | None, attachments: list[_Part]) -> _Part:
    """The usual structure, which RFC 8621 4.1.4's algorithm reads back into the same lists.

    multipart/mixed [multipart/alternative [text, multipart/related [html, inline...]],
    attachment...], each level only when needed. Parts with a cid and no "attachment"
    disposition are embedded in the HTML (RFC 2387); the rest are attachments.
    """
    related = [
        part for part in attachments if html and part.cid and part.disposition != "attachment"
    ]
    others = [part for part in attachments if all(part is not inline for inline in related)]
    for part in related:
        part.default_disposition("inline")
    for part in others:
        part.default_disposition("attachment")
    html_tree = _Part("multipart/related", sub_parts=[html, *related]) if html and related else html
    if text and html_tree:
        body: _Part | None = _Part("multipart/alternative", sub_parts=[text, html_tree])
    else:
        body = text or html_tree
    if others:
        return _Part("multipart/mixed", sub_parts=[body, *others] if body else others)
    return body or _empty_body()


# --- Rendering ---------------------------------------------------------------------------------


def _generated_fields(present: set[str], now: datetime, domain: str) -> list[Field]:
    """RFC 8621 4.6: the server MUST add Message-ID and Date when the client gave none."""
    generated: list[Field] = []
    if "date" not in present:
        generated.append(Field("Date", " " + format_datetime(now), "sentAt"))
    if "message-id" not in present:
        token = secrets.token_urlsafe(18)
        generated.append(Field("Message-ID", f" <{token}@{domain}>", "messageId"))
    return generated


class _Generator(BytesGenerator):
    """The stdlib's generator, able to write an 8bit message/rfc822 part.

    A message/* payload held as text is written by ``_encode``, which is plain ASCII in the
    stdlib; attached messages with 8-bit octets (RFC 2046 5.2.1 allows 8bit, base64 not)
    are held surrogate-escaped like every other 8-bit payload, so they are encoded back so.
    """

    def _encode(self, s: str) -> bytes:
        return s.encode("ascii", "surrogateescape")


def _render(fields: list[Field], root: _Part) -> bytes:
    message = EmailMessage(policy=POLICY)
    for header in fields:
        message.set_raw(header.name, Verbatim(header.name, header.value))
    _fill(message, root)
    output = BytesIO()
    _Generator(output, policy=POLICY).flatten(message)
    return output.getvalue()


def _fill(target: MIMEPart, part: _Part) -> None:
    """Write one part into ``target``: Content-* by the stdlib, then the given fields."""
    params = {
        key: value for key, value in (("charset", part.charset), ("name", part.name)) if value
    }
    target.add_header("Content-Type", part.type, **params)
    if part.disposition is not None:
        filename = {"filename": part.name} if part.name else {}
        target.add_header("Content-Disposition", part.disposition, **filename)
    for header in part.fields:
        target.set_raw(header.name, Verbatim(header.name, header.value))
    if part.is_multipart:
        for sub_part in part.sub_parts:
            child = MIMEPart(policy=POLICY)
            _fill(child, sub_part)
            target.attach(child)
        return
    encoding, payload = _transfer_encode(part)
    target["Content-Transfer-Encoding"] = encoding
    target.set_payload(payload)


def _transfer_encode(part: _Part) -> tuple[str, str]:
    """The Content-Transfer-Encoding and encoded body (RFC 2045 6), lines within 998 octets."""
    if part.type.startswith("message/"):
        return _message_encoding(part.content)
    if part.type.startswith("text/"):
        return _text_encoding(part.content)
    return "base64", _base64(part.content)


def _canonical(content: bytes) -> bytes:
    """RFC 2046 4.1.1: text line breaks are CRLF in canonical form."""
    return _LINE_BREAK.sub(b"\r\n", content)


def _fits_lines(content: bytes) -> bool:
    return b"\x00" not in content and all(len(line) <= MAX_LINE for line in content.split(b"\r\n"))


def _text_encoding(content: bytes) -> tuple[str, str]:
    """7bit when it fits, else the shorter of quoted-printable and base64 (as the stdlib does).

    Never 8bit: not every IMAP server takes 8-bit octets in APPEND.
    """
    text = _canonical(content)
    if b"\x00" in text:
        return "base64", _base64(content)
    if text.isascii() and _fits_lines(text):
        return "7bit", text.decode("ascii")
    quoted = binascii.b2a_qp(text, istext=True).decode("ascii")
    encoded = _base64(text)
    return ("quoted-printable", quoted) if len(quoted) <= len(encoded) else ("base64", encoded)


def _message_encoding(content: bytes) -> tuple[str, str]:
    """RFC 2046 5.2.1: message/rfc822 is 7bit or 8bit; base64 only for what cannot be either.

    The generator writes a message's payload as it is, so the line ends are CRLF already.
    """
    text = _canonical(content)
    if not _fits_lines(text):
        return "base64", _base64(content).replace("\n", CRLF)
    encoding = "7bit" if text.isascii() else "8bit"
    return encoding, text.decode("ascii", "surrogateescape")


def _base64(content: bytes) -> str:
    """RFC 2045 6.8 base64 in lines of 76 characters."""
    return base64.encodebytes(content).decode("ascii")


# --- compose -----------------------------------------------------------------------------------


def compose(
    email: Mapping[str, Any],
    blobs: Mapping[str, bytes],
    *,
    now: datetime,
    domain: str,
    max_attachments_size: int,
) -> bytes:
    """The message an ``Email/set`` create describes, CRLF throughout, for IMAP APPEND.

    ``blobs`` holds the octets of the :func:`referenced_blobs` that exist. ``now`` gives the
    Date and ``domain`` the Message-ID when the client sets neither. Raises ComposeError.
    """
    check = Check(blobs)
    fields = _top_fields(email, check)
    root = _body(email, check)
    # RFC 8621 4.6: the root part must not repeat a field the Email gives; its own header:
    # properties are the message's header fields too.
    flag_duplicates(((header.name, header.source) for header in fields + root.fields), check)
    check.raise_errors(max_attachments_size)
    present = {header.name.lower() for header in fields + root.fields}
    fields = _generated_fields(present, now, domain) + fields
    if "mime-version" not in present:
        fields.append(Field("MIME-Version", " 1.0", "MIME-Version"))
    return _render(fields, root)
