"""The MIME tree of a message as EmailBodyPart objects (RFC 8621 4.1.4), from its raw bytes.

:func:`body_structure` reads the raw RFC 5322 message once and returns a tree of
:class:`BodyPart`: plain data (no stdlib objects), so it can be cached and serialised.
Body values are a separate step (:mod:`gateway.mime.bodyvalues`) that needs only one part's
bytes, so a later caller can fetch a single section from IMAP instead of the whole message.

partId is the IMAP section number (RFC 3501 6.4.5, RFC 9051 6.4.5), so a part can be
fetched with ``BINARY.PEEK[<partId>]`` or ``BODY.PEEK[<partId>]``:

* a message whose body is not multipart has one part, ``"1"``;
* the children of a top-level multipart are ``"1"``, ``"2"``, ...; the children of a nested
  multipart numbered ``"2"`` are ``"2.1"``, ``"2.2"``, ...;
* the body of a ``message/rfc822`` (or ``message/global``) part ``"3"`` is numbered below it:
  ``"3.1"``, ``"3.2"``, ... if that body is multipart, else its single part is ``"3.1"``;
* multipart containers have no partId (RFC 8621 4.1.4: null if and only if multipart/*).

Parts are split here on bytes (RFC 2046 5.1.1 delimiters) because the stdlib parser keeps
no byte offsets: with it, neither a part's own octets nor an attached message's exact bytes
(and so its size) could be had, as the stdlib re-serialises the messages it parses into.
Each part's header section is parsed by the stdlib ``email`` package with ``policy.default``,
which decodes the parameters (RFC 2231, RFC 2047).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from email import policy
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.utils import collapse_rfc2231_value
from typing import Any, Final, TypeAlias

from gateway.mime.headers import decode_raw
from gateway.mime.limits import (
    FIELD_OCTETS,
    HEADER_SECTION_OCTETS,
    MAX_DEPTH,
    MAX_PARTS,
    MIME_FIELD_OCTETS,
    MIME_FIELDS_BUDGET,
    PARAMETERS_PER_FIELD,
    PIECE,
)

# RFC 8621 4.2: bodyProperties when the client gives none.
DEFAULT_BODY_PROPERTIES: Final = (
    "partId",
    "blobId",
    "size",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
)

# RFC 2045 6.1: encodings that leave the octets as they are.
IDENTITY_ENCODINGS: Final = frozenset({"7bit", "8bit", "binary"})

# RFC 8621 4.1.4: message types whose body is a message (not recursed into by bodyStructure).
MESSAGE_TYPES: Final = frozenset({"message/rfc822", "message/global"})

HeaderProperty: TypeAlias = Callable[[list[tuple[str, str]], str], Any]

# See parse_cost: 64 KiB, the input gateway.offload.sized keeps on the loop, of a dense
# header took 40 ms per form, of parts 200 ms.
_OCTET_COST: Final = 16
_PART_COST: Final = 16 * 1024
_RENDER_COST: Final = 1024

# The fields whose parameters the stdlib parses (RFC 2045 5.1, RFC 2183 2, RFC 2231).
_PARAMETERIZED: Final = ("content-type", "content-disposition")
# Their header classes as policy.default makes them, made once: the registry builds a new
# class on every lookup.
_HEADER_CLASSES: Final = {name: HeaderRegistry()[name] for name in _PARAMETERIZED}
# A field value split at its top-level ";": quoted strings and comments kept whole (an
# unterminated one runs to the end), so every piece is matched once.
_PARAMETER_PIECES = re.compile(r'"(?:[^"\\]|\\.)*"?|\((?:[^()\\]|\\.)*\)?|[^";(]+|;', re.DOTALL)
# RFC 5322 2.2 / 3.6.8: field-name is printable US-ASCII except ":"; obsolete syntax (4.5.8)
# allows white space before the colon.
_FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")
_EMPTY_LINES = (b"\n", b"\r\n")
_COMMENT = re.compile(r"\([^()]*\)")


@dataclass(frozen=True, slots=True)
class Decoded:
    """Octets after Content-Transfer-Encoding decoding, and whether the encoding was broken."""

    content: bytes
    problem: bool


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One MIME entity. Offsets locate it in the message: its header section is
    ``message[header_start:body_start]``, its still-encoded body ``message[body_start:body_end]``.

    ``size`` is the length of the body after Content-Transfer-Encoding decoding (RFC 8621
    4.1.4: the octets the blob holds); for multiparts, which have no blob, it is the length
    of the raw body. ``message`` is the encapsulated message's body of a message/rfc822 or
    message/global part, kept for callers mapping its parts to IMAP sections; RFC 8621 4.1.4
    forbids showing it in bodyStructure, so :meth:`to_jmap` never does.
    """

    part_id: str | None
    type: str
    headers: tuple[tuple[str, str], ...]
    name: str | None
    charset: str | None
    disposition: str | None
    cid: str | None
    language: tuple[str, ...] | None
    location: str | None
    transfer_encoding: str
    size: int
    header_start: int
    body_start: int
    body_end: int
    sub_parts: tuple[BodyPart, ...] = ()
    message: BodyPart | None = None

    @property
    def is_multipart(self) -> bool:
        return self.type.startswith("multipart/")

    def walk(self) -> Iterator[BodyPart]:
        """This part and its descendants depth-first, not entering encapsulated messages."""
        yield self
        for child in self.sub_parts:
            yield from child.walk()

    def to_jmap(
        self,
        properties: Collection[str],
        *,
        blob_id: Callable[[str], str],
        header_property: HeaderProperty | None = None,
    ) -> dict[str, Any]:
        """The EmailBodyPart with exactly ``properties`` (already validated by the caller).

        ``blob_id`` maps a partId to its blobId. ``header:`` properties go to
        ``header_property(raw headers, property name)``; "subParts" recurses with the same
        properties.
        """
        render = _Render(properties, blob_id, header_property)
        return {prop: render.value(self, prop) for prop in properties}


@dataclass(frozen=True, slots=True)
class _Render:
    properties: Collection[str]
    blob_id: Callable[[str], str]
    header_property: HeaderProperty | None

    def value(self, part: BodyPart, prop: str) -> Any:
        if prop.startswith("header:"):
            if self.header_property is None:
                raise ValueError(f"no header_property hook for {prop}")
            return self.header_property(list(part.headers), prop)
        getter = _GETTERS.get(prop)
        if getter is None:
            raise ValueError(f"not an EmailBodyPart property: {prop}")
        return getter(part, self)

    def blob(self, part: BodyPart) -> str | None:
        return None if part.part_id is None else self.blob_id(part.part_id)

    def sub_parts(self, part: BodyPart) -> list[dict[str, Any]] | None:
        if not part.is_multipart:
            return None
        return [
            {prop: self.value(child, prop) for prop in self.properties} for child in part.sub_parts
        ]


_GETTERS: dict[str, Callable[[BodyPart, _Render], Any]] = {
    "partId": lambda part, _: part.part_id,
    "blobId": lambda part, render: render.blob(part),
    "size": lambda part, _: part.size,
    "headers": lambda part, _: [{"name": name, "value": value} for name, value in part.headers],
    "name": lambda part, _: part.name,
    "type": lambda part, _: part.type,
    "charset": lambda part, _: part.charset,
    "disposition": lambda part, _: part.disposition,
    "cid": lambda part, _: part.cid,
    "language": lambda part, _: None if part.language is None else list(part.language),
    "location": lambda part, _: part.location,
    "subParts": lambda part, render: render.sub_parts(part),
}

# RFC 8621 4.1.4: every EmailBodyPart property except the "header:" forms.
BODY_PART_PROPERTIES: Final = frozenset(_GETTERS)


def parse_cost(data: bytes) -> int:
    """What parsing ``data`` (a message, a header block, a text part) may cost, in the octets
    gateway.offload.sized counts: parsing is not a plain scan, so small inputs with a lot to
    parse are not taken for small work.

    An octet costs up to about 16 times a scan's (a structured header form spends
    microseconds per token, a charset guess about as much), and each line that may be a
    delimiter about what 16 KiB do (a part's fields go through the stdlib's parser).
    """
    return _OCTET_COST * len(data) + _PART_COST * data.count(b"\n--")


def render_cost(root: BodyPart) -> int:
    """What turning a parsed tree into EmailBodyPart objects may cost, as :func:`parse_cost`
    counts: a KiB per part, and its fields as parse_cost counts header octets."""
    parts = [root]
    cost = 0
    while parts:
        part = parts.pop()
        cost += _RENDER_COST + _OCTET_COST * sum(len(n) + len(v) for n, v in part.headers)
        parts += [*part.sub_parts, *([part.message] if part.message else [])]
    return cost


def body_structure(message: bytes) -> BodyPart:
    """The bodyStructure of a raw RFC 5322 message; spans are offsets into ``message``.

    Work is bounded by gateway.mime.limits: at most MAX_PARTS entities and MAX_DEPTH levels
    are parsed (the parts after them are not listed), and the Content-Type and
    Content-Disposition fields handed to the stdlib share MIME_FIELDS_BUDGET octets.
    """
    return _parse_entity(message, 0, len(message), _Place("1", "", "text/plain", 0), _Budget())


def part_content(message: bytes, part: BodyPart) -> bytes:
    """The octets a part's blob holds: its body with the transfer encoding decoded."""
    return decode_transfer(message[part.body_start : part.body_end], part.transfer_encoding).content


# -- Content-Transfer-Encoding (RFC 2045 6) --------------------------------------------------


def decode_transfer(body: bytes, encoding: str) -> Decoded:
    """Undo a Content-Transfer-Encoding, leniently, noting damage.

    RFC 8621 4.1.4: an unknown encoding is treated as none (and is an encoding problem).
    """
    decoder = _DECODERS.get(encoding)
    if decoder is not None:
        return decoder(body)
    return Decoded(body, encoding not in IDENTITY_ENCODINGS)


_BASE64_SPACE: Final = b" \t\r\n\f\v"
# Octets outside the base64 alphabet and its padding, deleted by bytes.translate.
_NOT_BASE64: Final = bytes(
    octet for octet in range(256) if not re.fullmatch(rb"[A-Za-z0-9+/=]", bytes([octet]))
)


def _pieces(data: bytes, separator: bytes) -> Iterator[bytes]:
    """``data`` in slices of about PIECE octets, each ending just after a ``separator`` (the
    last at the end), so a pass over a large body is many short calls into C, not one long
    one that keeps the interpreter from the event loop (gateway.mime.limits.PIECE)."""
    start = 0
    while start < len(data):
        cut = data.find(separator, start + PIECE)
        end = len(data) if cut < 0 else cut + len(separator)
        yield data[start:end]
        start = end


def _decode_base64(body: bytes) -> Decoded:
    """RFC 2045 6.8: line breaks and white space are ignored; anything else is damage."""
    compact = body.translate(None, _BASE64_SPACE)
    try:
        return Decoded(binascii.a2b_base64(compact, strict_mode=True), False)
    except binascii.Error:
        pass
    # RFC 2045 6.8 says to ignore characters outside the alphabet. Padding inside the data
    # usually means concatenated encodings, so each run between paddings is decoded alone.
    runs = (run for piece in _base64_pieces(compact) for run in piece.split(b"="))
    return Decoded(b"".join(_decode_base64_run(run) for run in runs), True)


def _base64_pieces(compact: bytes) -> Iterator[bytes]:
    """Damaged base64 without what is outside its alphabet, in pieces ending at a padding."""
    return _pieces(compact.translate(None, _NOT_BASE64), b"=")


def _decode_base64_run(run: bytes) -> bytes:
    """Decode unpadded base64, dropping a last lone character (six bits make no octet)."""
    usable = run[: len(run) - (len(run) % 4 == 1)]
    return binascii.a2b_base64(usable + b"=" * (-len(usable) % 4)) if usable else b""


def _base64_size(body: bytes) -> int:
    """The length of what :func:`_decode_base64` gives, counted rather than decoded where
    the data is damaged (a run of n characters decodes to 3n // 4 octets), as bodyStructure
    needs every part's size and a damaged part can hold a padding every few characters."""
    compact = body.translate(None, _BASE64_SPACE)
    try:
        return len(binascii.a2b_base64(compact, strict_mode=True))
    except binascii.Error:
        pass
    return sum(len(run) * 3 // 4 for piece in _base64_pieces(compact) for run in piece.split(b"="))


# RFC 2045 6.7 rules 1 and 5: "=" starts a hex octet or a soft line break, nothing else.
_QP_BAD_ESCAPE = re.compile(rb"=(?![0-9A-Fa-f]{2}|\r?\n|\Z)")


def _decode_quoted_printable(body: bytes) -> Decoded:
    """Decode quoted-printable; a stray "=" is kept as is (RFC 2045 6.7, note (2)) but noted.

    Decoded piece by piece, each ending with a line (a soft line break never spans two).
    """
    content: list[bytes] = []
    problem = False
    for piece in _pieces(body, b"\n"):
        stripped = _without_trailing_space(piece)
        content.append(binascii.a2b_qp(stripped))
        problem = problem or _QP_BAD_ESCAPE.search(stripped) is not None
    return Decoded(b"".join(content), problem)


def _without_trailing_space(data: bytes) -> bytes:
    """RFC 2045 6.7 rule 3: white space at the end of a line was added in transport; delete it
    (before CRLF or LF, and at the end of the data)."""
    lines = data.split(b"\n")
    kept = [
        line[:-1].rstrip(b" \t") + b"\r" if line.endswith(b"\r") else line.rstrip(b" \t")
        for line in lines[:-1]
    ]
    kept.append(lines[-1].rstrip(b" \t"))
    return b"\n".join(kept)


_DECODERS: dict[str, Callable[[bytes], Decoded]] = {
    "base64": _decode_base64,
    "quoted-printable": _decode_quoted_printable,
}


# -- Splitting the message into entities (RFC 5322 2.1, RFC 2046 5.1.1) -----------------------


@dataclass(frozen=True, slots=True)
class _Place:
    """Where an entity sits: its IMAP number, its children's prefix, its implicit type."""

    number: str
    child_prefix: str
    default_type: str
    depth: int

    def child(self, index: int, default_type: str) -> _Place:
        number = f"{self.child_prefix}{index}"
        return _Place(number, f"{number}.", default_type, self.depth + 1)

    def encapsulated(self) -> _Place:
        return _Place(f"{self.number}.1", f"{self.number}.", "text/plain", self.depth + 1)


@dataclass(slots=True)
class _Budget:
    """What one message may still spend: entities to parse, MIME field octets to parse."""

    parts: int = MAX_PARTS
    field_octets: int = MIME_FIELDS_BUDGET


def _parse_entity(message: bytes, start: int, end: int, place: _Place, budget: _Budget) -> BodyPart:
    budget.parts -= 1
    fields, body_start = _header_fields(message, start, end)
    headers = tuple((name.decode("ascii"), _raw_value(value)) for name, value in fields)
    mime = _mime(fields, place.default_type, budget)
    # RFC 2045 5.2: lower case; an absent or invalid Content-Type means the implicit type.
    content_type = mime.get_content_type()
    encoding = _transfer_encoding(headers)
    return BodyPart(
        part_id=None if content_type.startswith("multipart/") else place.number,
        type=content_type,
        headers=headers,
        name=_name(mime),
        charset=_charset(mime, content_type),
        disposition=_disposition(mime),
        cid=_cid(headers),
        language=_language(headers),
        location=_location(headers),
        transfer_encoding=encoding,
        size=_size(message[body_start:end], content_type, encoding),
        header_start=start,
        body_start=body_start,
        body_end=end,
        sub_parts=_children(message, body_start, end, mime, place, budget),
        message=_encapsulated(message, body_start, end, content_type, encoding, place, budget),
    )


def _size(body: bytes, content_type: str, encoding: str) -> int:
    """Octets after transfer decoding; a multipart has no blob and its raw length."""
    if content_type.startswith("multipart/"):
        return len(body)
    if encoding == "base64":
        return _base64_size(body)
    return len(decode_transfer(body, encoding).content)


def _children(
    message: bytes, start: int, end: int, mime: EmailMessage, place: _Place, budget: _Budget
) -> tuple[BodyPart, ...]:
    """The parts of a multipart, none past MAX_DEPTH and none once MAX_PARTS are parsed.

    RFC 2046 5.1.5: parts of a multipart/digest are message/rfc822 unless they say.
    """
    content_type = mime.get_content_type()
    boundary = _boundary(mime)
    if not content_type.startswith("multipart/") or boundary is None or place.depth >= MAX_DEPTH:
        return ()
    default = "message/rfc822" if content_type == "multipart/digest" else "text/plain"
    children: list[BodyPart] = []
    for index, (part_start, part_end) in enumerate(
        _part_spans(message, start, end, boundary), start=1
    ):
        if budget.parts <= 0:
            break
        children.append(
            _parse_entity(message, part_start, part_end, place.child(index, default), budget)
        )
    return tuple(children)


def _encapsulated(
    message: bytes,
    start: int,
    end: int,
    content_type: str,
    encoding: str,
    place: _Place,
    budget: _Budget,
) -> BodyPart | None:
    """The body of the message a message/rfc822 or message/global part holds.

    A transfer-encoded one (RFC 2046 5.2.1 forbids that) is left opaque, as its IMAP
    sections would point into the encoded text.
    """
    if content_type not in MESSAGE_TYPES or encoding not in IDENTITY_ENCODINGS:
        return None
    if place.depth >= MAX_DEPTH or budget.parts <= 0:
        return None
    return _parse_entity(message, start, end, place.encapsulated(), budget)


def _line_end(data: bytes, pos: int, end: int) -> int:
    newline = data.find(b"\n", pos, end)
    return end if newline < 0 else newline + 1


def _header_end(message: bytes, start: int, end: int) -> int:
    """Where the body of the entity at ``start`` begins: after its first empty line (RFC 5322
    2.1), found with two literal searches rather than line by line."""
    if message.startswith(_EMPTY_LINES, start, end):
        return _line_end(message, start, end)
    ends = [
        found + len(gap)
        for gap in (b"\n\n", b"\n\r\n")
        if (found := message.find(gap, start, end)) >= 0
    ]
    return min(ends, default=end)


def _header_fields(message: bytes, start: int, end: int) -> tuple[list[tuple[bytes, bytes]], int]:
    """Cut an entity's header section into (name, raw value) fields; also where the body starts.

    RFC 5322 2.1: the header section ends at the first empty line. A line that is neither a
    field nor a continuation is dropped with its continuations, as
    :func:`gateway.mime.headers.parse_header_block` does, and as IMAP servers do when they
    number sections: the body must start where the upstream's ``BODY[<part>]`` starts.
    Of a long section only the first HEADER_SECTION_OCTETS are read, and a value keeps its
    first FIELD_OCTETS, as parse_header_block does.
    """
    body_start = _header_end(message, start, end)
    section_end = min(body_start, start + HEADER_SECTION_OCTETS)
    fields: list[tuple[bytes, bytes]] = []
    # The field being read (None while none is, or after a line that starts no field) and
    # its value's span: a field and its continuation lines are contiguous.
    name: bytes | None = None
    value_start = value_end = pos = start
    while pos < section_end:
        line_end = _line_end(message, pos, section_end)
        if message.startswith((b" ", b"\t"), pos, line_end):
            value_end = line_end
        else:
            if name is not None:
                fields.append(
                    (name, message[value_start : min(value_end, value_start + FIELD_OCTETS)])
                )
            match = _FIELD_NAME.match(message, pos, line_end)
            name = None if match is None else match[1]
            value_start, value_end = (pos if match is None else match.end()), line_end
        pos = line_end
    if name is not None:
        fields.append((name, message[value_start : min(value_end, value_start + FIELD_OCTETS)]))
    return fields, body_start


def _raw_value(value: bytes) -> str:
    """RFC 8621 4.1.2.1 Raw form, decoded as the message's own header fields are."""
    return decode_raw(value.removesuffix(b"\n").removesuffix(b"\r"))


# RFC 2046 5.1.1: after "--" boundary, "--" for the close delimiter or transport padding, then
# the line break. Text after a close delimiter's "--" is tolerated: the line is nothing else.
_DELIMITER_END = re.compile(rb"(?:(--)[^\n]*|[ \t]*\r?)(?:\n|\Z)")


def _delimiters(message: bytes, start: int, end: int, boundary: bytes) -> Iterator[re.Match[bytes]]:
    """The ends of the delimiter lines of a multipart body, found by a fast literal search.

    Each match starts right after "--" boundary; group 1 is set for the close delimiter.
    """
    marker = b"--" + boundary
    pos = message.find(marker, start, end)
    while pos >= 0:
        if pos == start or message[pos - 1] == ord("\n"):
            match = _DELIMITER_END.match(message, pos + len(marker), end)
            if match is not None:
                yield match
        pos = message.find(marker, pos + 1, end)


def _part_spans(message: bytes, start: int, end: int, boundary: bytes) -> Iterator[tuple[int, int]]:
    """The body spans of a multipart's parts, found as they are read; preamble and epilogue
    are not parts.

    A part runs from after one delimiter line to the line break before the next (RFC 2046
    5.1.1: that CRLF belongs to the delimiter); without a close delimiter the last part runs
    to the end, as in IMAP servers.
    """
    part_start: int | None = None
    for match in _delimiters(message, start, end, boundary):
        if part_start is not None:
            line_start = match.start() - len(boundary) - 2
            yield part_start, max(part_start, _before_line_break(message, line_start))
        if match[1]:
            return
        part_start = match.end()
    if part_start is not None:
        yield part_start, end


def _before_line_break(message: bytes, pos: int) -> int:
    if message.endswith(b"\r\n", 0, pos):
        return pos - 2
    return pos - 1 if message.endswith(b"\n", 0, pos) else pos


# -- The parameters of Content-Type and Content-Disposition (RFC 2045 5.1, RFC 2231) ------------


def _mime(fields: list[tuple[bytes, bytes]], default_type: str, budget: _Budget) -> EmailMessage:
    """The stdlib's view of an entity's Content-Type and Content-Disposition.

    Each field is parsed once into a header object (the stdlib parses a stored string again
    on every read, which made a part with thousands of parameters cost seconds). The value
    is unfolded as the stdlib's own parser does, decoded as the header fields are, and
    bounded by :func:`_bounded_field`.
    """
    mime = EmailMessage(policy=policy.default)
    mime.set_default_type(default_type)
    for wanted in _PARAMETERIZED:
        raw = next((value for name, value in fields if name.lower() == wanted.encode()), None)
        if raw is not None:
            unfolded = decode_raw(raw).lstrip(" \t").replace("\r", "").replace("\n", "")
            mime[wanted] = _HEADER_CLASSES[wanted](wanted, _bounded_field(unfolded, budget))
    return mime


def _bounded_field(value: str, budget: _Budget) -> str:
    """A parameterized field as the parameter parser gets it: MIME_FIELD_OCTETS characters
    and PARAMETERS_PER_FIELD parameters at most (RFC 2231 continuations count one each), and
    no parameters at all once the message's MIME_FIELDS_BUDGET is spent."""
    value = value[:MIME_FIELD_OCTETS]
    separators = 0
    for piece in _PARAMETER_PIECES.finditer(value):
        if piece.group() == ";":
            separators += 1
            if separators > PARAMETERS_PER_FIELD or len(value) > budget.field_octets:
                value = value[: piece.start()]
                break
    budget.field_octets = max(0, budget.field_octets - len(value))
    return value


# -- Header fields of one entity (RFC 2045, RFC 2183, RFC 2392, RFC 3282, RFC 2557) ----------


def _field(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    """The raw value of the first field called ``name`` (lower case), or None."""
    for field_name, value in headers:
        if field_name.lower() == name:
            return value
    return None


def _without_comments(value: str) -> str:
    """RFC 5322 3.2.2: comments are CFWS, not content."""
    return _COMMENT.sub("", value).strip()


def _boundary(mime: EmailMessage) -> bytes | None:
    """The boundary parameter; none (or one that is not ASCII, RFC 2046 5.1.1) means no parts."""
    boundary = mime.get_boundary()
    if not boundary or not boundary.isascii():
        return None
    return boundary.encode("ascii")


def _transfer_encoding(headers: tuple[tuple[str, str], ...]) -> str:
    """RFC 2045 6.1: the mechanism, case-insensitive; "7bit" when absent."""
    return _without_comments(_field(headers, "content-transfer-encoding") or "").lower() or "7bit"


def _charset(mime: EmailMessage, content_type: str) -> str | None:
    """RFC 8621 4.1.4: the charset parameter, else "us-ascii" for text/* (RFC 2045 5.2).

    An implicit message/rfc822 (inside multipart/digest) gets null, not "us-ascii": the
    "implicit charset as per the MIME standard" exists only for text.
    """
    param = mime.get_param("charset")
    charset = collapse_rfc2231_value(param).strip() if param else ""
    if charset:
        return charset
    return "us-ascii" if content_type.startswith("text/") else None


def _name(mime: EmailMessage) -> str | None:
    """RFC 8621 4.1.4: Content-Disposition filename (RFC 2231), else Content-Type name.

    The stdlib also decodes RFC 2047 encoded words in either, as common mailers use them.
    """
    name = (mime.get_filename() or "").strip()
    return name or None


def _disposition(mime: EmailMessage) -> str | None:
    """RFC 2183: the disposition type without parameters, lower case (it is case-insensitive)."""
    return mime.get_content_disposition() or None


def _cid(headers: tuple[tuple[str, str], ...]) -> str | None:
    """RFC 2392 / RFC 8621 4.1.4: the Content-ID without CFWS and angle brackets."""
    value = _field(headers, "content-id") or ""
    inside = re.search(r"<([^<>]*)>", value)
    cid = "".join((inside[1] if inside else _without_comments(value)).split())
    return cid or None


def _language(headers: tuple[tuple[str, str], ...]) -> tuple[str, ...] | None:
    """RFC 3282: a comma-separated list of language tags; null when there is none."""
    value = _without_comments(_field(headers, "content-language") or "")
    tags = tuple(tag.strip() for tag in value.split(",") if tag.strip())
    return tags or None


def _location(headers: tuple[tuple[str, str], ...]) -> str | None:
    """RFC 2557: the URI; folding white space inside a long one is not part of it."""
    location = "".join((_field(headers, "content-location") or "").split())
    return location or None


# -- textBody, htmlBody, attachments (RFC 8621 4.1.4) ----------------------------------------


def _is_inline_media(content_type: str) -> bool:
    return content_type.startswith(("image/", "audio/", "video/"))


@dataclass(slots=True)
class _Lists:
    """The three lists being filled; text or html is None in a branch that excludes it."""

    text: list[BodyPart] | None
    html: list[BodyPart] | None
    attachments: list[BodyPart]


def text_html_attachments(root: BodyPart) -> tuple[list[BodyPart], list[BodyPart], list[BodyPart]]:
    """textBody, htmlBody and attachments by the algorithm RFC 8621 4.1.4 suggests."""
    text: list[BodyPart] = []
    html: list[BodyPart] = []
    attachments: list[BodyPart] = []
    _parse_structure((root,), "mixed", False, _Lists(text, html, attachments))
    return text, html, attachments


def _is_body_candidate(part: BodyPart, index: int, multipart_type: str) -> bool:
    """The pseudocode's isInline: an allowed body type, not an attachment by disposition.

    In multipart/related only the first part can be inline; a text part with a name that
    is not first is taken to be an attachment.
    """
    return (
        part.disposition != "attachment"
        and (part.type in ("text/plain", "text/html") or _is_inline_media(part.type))
        and (
            index == 0
            or (multipart_type != "related" and (_is_inline_media(part.type) or not part.name))
        )
    )


def _parse_structure(
    parts: tuple[BodyPart, ...], multipart_type: str, in_alternative: bool, lists: _Lists
) -> None:
    """The pseudocode's parseStructure; ``lists`` holds this call's own textBody/htmlBody."""
    text_length = -1 if lists.text is None else len(lists.text)
    html_length = -1 if lists.html is None else len(lists.html)
    local = _Lists(lists.text, lists.html, lists.attachments)
    for index, part in enumerate(parts):
        if part.is_multipart:
            sub_type = part.type.split("/", 1)[1]
            _parse_structure(
                part.sub_parts, sub_type, in_alternative or sub_type == "alternative", local
            )
        elif not _is_body_candidate(part, index, multipart_type):
            local.attachments.append(part)
        elif multipart_type == "alternative":
            _add_alternative(part, local)
        else:
            _add_inline(part, in_alternative, local)
    if multipart_type == "alternative" and local.text is not None and local.html is not None:
        _complete_alternative(local.text, local.html, text_length, html_length)


def _add_alternative(part: BodyPart, lists: _Lists) -> None:
    """A direct child of multipart/alternative goes to the list of its type.

    The pseudocode would fail pushing to a list that an enclosing branch set to null; such
    a part goes to attachments instead, so that every leaf is shown somewhere.
    """
    target = {"text/plain": lists.text, "text/html": lists.html}.get(part.type, lists.attachments)
    (lists.attachments if target is None else target).append(part)


def _add_inline(part: BodyPart, in_alternative: bool, lists: _Lists) -> None:
    """In an alternative's branch, text/plain makes the branch text-only, text/html HTML-only."""
    if in_alternative and part.type == "text/plain":
        lists.html = None
    if in_alternative and part.type == "text/html":
        lists.text = None
    if lists.text is not None:
        lists.text.append(part)
    if lists.html is not None:
        lists.html.append(part)
    if (lists.text is None or lists.html is None) and _is_inline_media(part.type):
        lists.attachments.append(part)


def _complete_alternative(
    text: list[BodyPart], html: list[BodyPart], text_length: int, html_length: int
) -> None:
    """An alternative that gave only HTML (or only text) fills the other list with it."""
    if text_length == len(text) and html_length != len(html):
        text.extend(html[html_length:])
    if html_length == len(html) and text_length != len(text):
        html.extend(text[text_length:])


def has_attachment(attachments: Collection[BodyPart]) -> bool:
    """RFC 8621 4.1.4: true if some attachment is not ``Content-Disposition: inline``."""
    return any(part.disposition != "inline" for part in attachments)


# -- Plain data, for caches ------------------------------------------------------------------

_SCALARS: Final = (
    "part_id",
    "type",
    "name",
    "charset",
    "disposition",
    "cid",
    "location",
    "transfer_encoding",
    "size",
    "header_start",
    "body_start",
    "body_end",
)


def to_plain(part: BodyPart) -> list[Any]:
    """The part tree as lists of scalars (msgpack-ready); :func:`from_plain` reverses it."""
    return [
        *(getattr(part, name) for name in _SCALARS),
        [list(pair) for pair in part.headers],
        None if part.language is None else list(part.language),
        [to_plain(child) for child in part.sub_parts],
        None if part.message is None else to_plain(part.message),
    ]


def from_plain(data: list[Any]) -> BodyPart:
    scalars = dict(zip(_SCALARS, data, strict=False))
    headers, language, children, message = data[len(_SCALARS) :]
    return BodyPart(
        **scalars,
        headers=tuple((name, value) for name, value in headers),
        language=None if language is None else tuple(language),
        sub_parts=tuple(from_plain(child) for child in children),
        message=None if message is None else from_plain(message),
    )
