"""Header fields of a message or body part and their JMAP forms (RFC 8621 4.1.2 and 4.1.3).

Pure: the header block as IMAP sends it (``BODY.PEEK[HEADER]``) goes in, JSON-ready values come
out, and no input raises. A value that does not parse as a form gives that form's fallback: null
for MessageIds, Date and URLs (as RFC 8621 says for each), a best-effort list for the address
forms, whose types have no null.

The stdlib does the RFC 2047 payload decoding (``email.header.decode_header``) and serves as the
differential oracle in the tests. Its header registry is not used to parse structured fields:
it raises on a group without its closing ";", decodes encoded-words glued to other text, inside
quoted strings and in unknown charsets (yielding lone surrogates, which are not JSON), drops the
comment RFC 8621 wants as the fallback display name, and reads two-digit years with a window
other than RFC 5322 4.3's.
"""

from __future__ import annotations

import calendar
import codecs
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header
from enum import StrEnum
from types import MappingProxyType
from typing import Final, NamedTuple, TypedDict

from gateway.mime.limits import FIELD_OCTETS, HEADER_SECTION_OCTETS, STRUCTURED_TOKENS


class EmailAddress(TypedDict):
    """RFC 8621 4.1.2.3 EmailAddress."""

    name: str | None
    email: str


class EmailAddressGroup(TypedDict):
    """RFC 8621 4.1.2.4 EmailAddressGroup; name is null for a run of mailboxes outside groups."""

    name: str | None
    addresses: list[EmailAddress]


class EmailHeader(TypedDict):
    """RFC 8621 4.1.3 EmailHeader: one item of the ``headers`` property."""

    name: str
    value: str


FormValue = str | list[str] | list[EmailAddress] | list[EmailAddressGroup] | None
# The value of a ``header:`` property: one form value, or a list of them with ":all".
PropertyValue = FormValue | list[FormValue]


@dataclass(frozen=True, slots=True)
class RawHeader:
    """One header field: its name as written and its value in Raw form (see parse_header_block)."""

    name: str
    value: str


# --- The header block ----------------------------------------------------------------------

# RFC 5322 3.6.8: field-name is printable ASCII but ":"; obs-optional (4.5.8) allows WSP before ":".
_FIELD_START: Final = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
_FALLBACK_ERRORS: Final = "gateway.mime.headers.windows-1252"


def parse_header_block(data: bytes) -> list[RawHeader]:
    """The fields of a header block in order, up to its blank line.

    A line that starts no field (no colon, or a name outside RFC 5322 3.6.8's characters) is
    dropped together with its continuation lines: it is not a field, and the fields after it
    still are. A continuation line before any field is dropped too.

    Only the first HEADER_SECTION_OCTETS of the block are read (a field cut there keeps what
    was read), and each value keeps its first FIELD_OCTETS (gateway.mime.limits).
    """
    headers: list[RawHeader] = []
    for field in _fields(data[:HEADER_SECTION_OCTETS]):
        start = _FIELD_START.match(field)
        if start is not None:
            name = start.group(1).decode("ascii")
            value = field[start.end() : start.end() + FIELD_OCTETS]
            headers.append(RawHeader(name, decode_raw(value)))
    return headers


def _fields(data: bytes) -> Iterator[bytes]:
    """Each field's octets with its folding kept and its terminating line break removed.

    A field and its continuation lines are contiguous, so each is one slice of ``data``.
    """
    start: int | None = None
    end = pos = 0
    while pos < len(data):
        newline = data.find(b"\n", pos)
        line_end = len(data) if newline < 0 else newline + 1
        if line_end - pos <= 2 and data.startswith((b"\r\n", b"\n"), pos):
            break
        if data.startswith((b" ", b"\t"), pos):
            end = line_end if start is not None else end
            pos = line_end
            continue
        if start is not None:
            yield _without_line_end(data[start:end])
        start, end = pos, line_end
        pos = line_end
    if start is not None:
        yield _without_line_end(data[start:end])


def _without_line_end(field: bytes) -> bytes:
    if field.endswith(b"\r\n"):
        return field[:-2]
    return field[:-1] if field.endswith(b"\n") else field


def decode_raw(octets: bytes) -> str:
    """Raw form (RFC 8621 4.1.2.1): the octets as UTF-8 (RFC 6532), with NUL octets dropped.

    RFC 8621 4.1.2.1: "Any NUL octet MUST be dropped". Octets that are not UTF-8 are read as
    windows-1252 instead of the SHOULD's U+FFFD: such headers are nearly always Latin-1 or
    windows-1252 written by old mailers, so the reader sees "Café" rather than a replacement
    character, and each octet maps to a character of its own, so nothing is lost.
    """
    return octets.decode("utf-8", _FALLBACK_ERRORS).replace("\x00", "")


def _windows_1252(octet: int) -> str:
    """The WHATWG windows-1252 character of an octet: cp1252, its 5 holes kept as C1 controls."""
    try:
        return bytes([octet]).decode("cp1252")
    except UnicodeDecodeError:
        return chr(octet)


_WINDOWS_1252: Final = tuple(_windows_1252(octet) for octet in range(256))


def _octets_as_windows_1252(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: replace each octet of an invalid UTF-8 run by its windows-1252 char."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    run = error.object[error.start : error.end]
    return "".join(_WINDOWS_1252[octet] for octet in run), error.end


codecs.register_error(_FALLBACK_ERRORS, _octets_as_windows_1252)


def headers_property(headers: Sequence[RawHeader]) -> list[EmailHeader]:
    """The ``headers`` property (RFC 8621 4.1.3): every field, in order, in Raw form."""
    return [{"name": header.name, "value": header.value} for header in headers]


# --- Text form and RFC 2047 encoded-words ------------------------------------------------------

_FOLD: Final = re.compile(r"\r?\n(?=[ \t])")
_SPACE_RUNS: Final = re.compile(r"([ \t\r\n]+)")
# RFC 2047 2: "=?" charset "?" encoding "?" encoded-text "?="; RFC 2231 5 adds "*language".
# The 75-character limit is not enforced: long words are common and the RFC 8621 MUST NOT
# concerns placement and white space only.
_ENCODED_WORD: Final = re.compile(
    r"=\?([\x21-\x29\x2b-\x3e\x40-\x7e]+)(?:\*[\x21-\x3e\x40-\x7e]*)?\?[bBqQ]\?[\x21-\x3e\x40-\x7e]+\?="
)
# RFC 8621 4.1.2.2: "Any NUL octets or control characters encoded per RFC 2047 are dropped".
_CONTROLS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Some Python codecs (utf-7, unicode-escape) can yield lone surrogates, which are not JSON.
_SURROGATES: Final = re.compile(r"[\ud800-\udfff]")
# WHATWG Encoding Standard: these labels are decoded with their supersets, which is what the
# mailers that declare them actually write (curly quotes in "iso-8859-1", and so on).
_SUPERSETS: Final = MappingProxyType(
    {
        "ascii": "cp1252",
        "iso8859-1": "cp1252",
        "iso8859-9": "cp1254",
        "gb2312": "gb18030",
        "gbk": "gb18030",
        "euc_kr": "cp949",
        "shift_jis": "cp932",
    }
)


def as_raw(raw: str) -> str:
    """Raw form (RFC 8621 4.1.2.1): the value as parse_header_block decoded it, folding kept."""
    return raw


def as_text(raw: str) -> str:
    """Text form (RFC 8621 4.1.2.2): unfolded, leading SP removed, encoded-words decoded, NFC."""
    text = _unfold(raw).lstrip(" ")
    return unicodedata.normalize("NFC", _decode_unstructured(text))


def _unfold(value: str) -> str:
    """RFC 5322 2.2.3: unfolding removes every CRLF that is immediately followed by WSP."""
    return _FOLD.sub("", value)


def _decode_unstructured(text: str) -> str:
    """Decode the encoded-words of unstructured text.

    RFC 2047 5(1): an encoded-word in text MUST be separated from adjacent text by white space,
    so only whole white-space-delimited pieces are decoded (RFC 8621 4.1.2.2: text violating
    this MUST NOT be decoded). RFC 2047 6.2: white space between two encoded-words is dropped.
    """
    out: list[str] = []
    space = ""
    after_word = False
    for index, piece in enumerate(_SPACE_RUNS.split(text)):
        if index % 2:
            space = piece
            continue
        decoded = _decode_encoded_word(piece)
        if decoded is None:
            out.append(space + piece)
        else:
            out.append(decoded if after_word else space + decoded)
        after_word = decoded is not None
        space = ""
    return "".join(out)


def _decode_encoded_word(word: str) -> str | None:
    """The text of a whole encoded-word, or None when it must stay as written.

    RFC 8621 4.1.2.2: only syntactically correct words in a known charset are decoded; a payload
    that does not decode becomes U+FFFD, as the RFC suggests for failed decodings.
    """
    match = _ENCODED_WORD.fullmatch(word)
    if match is None:
        return None
    try:
        [(payload, _charset)] = decode_header(word)
    except HeaderParseError:
        return "\ufffd"
    text = _decode_charset(payload, match.group(1))
    if text is None:
        return None
    return _SURROGATES.sub("\ufffd", _CONTROLS.sub("", text))


def _decode_charset(payload: bytes, charset: str) -> str | None:
    """Decode with a charset Python knows as a text encoding, else None (unknown charset)."""
    try:
        codec = codecs.lookup(charset).name
        return payload.decode(_SUPERSETS.get(codec, codec), "replace")
    except (LookupError, ValueError):
        # LookupError: unknown, or not a text encoding (base64, rot13); ValueError: a codec
        # without "replace" (idna). Neither is a MIME charset, so the word stays as written.
        return None


# --- Structured fields: a lexer shared by the address, message-id and date forms -------------

_ATOM: Final = "atom"
_QUOTED: Final = "quoted"
_LITERAL: Final = "literal"
_SPECIAL: Final = "special"
_COMMENT: Final = "comment"

# Every character but "(" starts one of these, so a match always succeeds; ")" and "]" out of
# place are atom text. Unterminated quoted strings and domain literals run to the end.
_LEXEME: Final = re.compile(
    r"""
      (?P<space>[ \t\r\n]+)
    | (?P<quoted>"(?:[^"\\]|\\.)*(?:"|\\?\Z))
    | (?P<literal>\[(?:[^\]\\]|\\.)*(?:\]|\\?\Z))
    | (?P<special>[<>,:;@])
    | (?P<atom>[^ \t\r\n"(\[<>,:;@]+)
    """,
    re.VERBOSE | re.DOTALL,
)
_QUOTED_PAIR: Final = re.compile(r"\\(.)", re.DOTALL)


class _Token(NamedTuple):
    """A lexeme of a structured field; spaced: white space or a comment came before it."""

    kind: str
    text: str
    spaced: bool

    def is_special(self, char: str) -> bool:
        return self.kind == _SPECIAL and self.text == char


def _tokens(value: str) -> Iterator[_Token]:
    """Lex an unfolded structured field value (RFC 5322 3.2), tolerating any garbage.

    At most STRUCTURED_TOKENS tokens are made (comments included); the rest of the value is
    discarded, as Postfix discards address tokens past its header_address_token_limit.
    """
    text = _unfold(value)
    spaced = False
    index = 0
    made = 0
    while index < len(text) and made < STRUCTURED_TOKENS:
        if text[index] == "(":
            end = _comment_end(text, index)
            yield _Token(_COMMENT, text[index:end], spaced)
            made += 1
            spaced = True
        else:
            match = _LEXEME.match(text, index)
            assert match is not None and match.lastgroup is not None  # see _LEXEME
            end = match.end()
            if match.lastgroup == "space":
                spaced = True
            else:
                yield _Token(match.lastgroup, match.group(), spaced)
                made += 1
                spaced = False
        index = end


def _comment_end(text: str, start: int) -> int:
    """The index after the comment opening at start: comments nest (RFC 5322 3.2.2)."""
    depth = 0
    index = start
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return len(text)


def _unquote(text: str, opening: str, closing: str) -> str:
    """The content of a quoted string or comment, quoted-pairs decoded (RFC 5322 3.2.1)."""
    inner = text[1:-1] if len(text) > 1 and text.endswith(closing) else text[len(opening) :]
    return _QUOTED_PAIR.sub(r"\1", inner)


def _name(text: str) -> str | None:
    """A display name as RFC 8621 4.1.2.3 gives it: trimmed, NFC; null when nothing is left."""
    trimmed = text.strip(" \t\r\n")
    return unicodedata.normalize("NFC", trimmed) if trimmed else None


# --- Addresses and GroupedAddresses ----------------------------------------------------------


def as_addresses(raw: str) -> list[EmailAddress]:
    """Addresses form (RFC 8621 4.1.2.3): every mailbox of the address-list, groups dropped."""
    return [address for group in as_grouped_addresses(raw) for address in group["addresses"]]


def as_grouped_addresses(raw: str) -> list[EmailAddressGroup]:
    """GroupedAddresses form (RFC 8621 4.1.2.4), best effort on broken lists.

    Mailboxes outside groups are collected, run by run, under a group named null. Empty list
    elements and elements holding only comments are skipped (RFC 5322 4.4 obs-addr-list); a
    group left open at the end, or by the next group's ":", is closed there.
    """
    groups: list[EmailAddressGroup] = []
    members: list[EmailAddress] | None = None
    in_group = False
    for separator, item in _address_items(_tokens(raw)):
        if separator == ":":
            group: EmailAddressGroup = {"name": _phrase(item), "addresses": []}
            groups.append(group)
            members, in_group = group["addresses"], True
            continue
        mailbox = _mailbox(item)
        if mailbox is not None:
            if members is None:
                groups.append({"name": None, "addresses": []})
                members = groups[-1]["addresses"]
            members.append(mailbox)
        if separator == ";" and in_group:
            members, in_group = None, False
    return groups


def _address_items(tokens: Iterable[_Token]) -> Iterator[tuple[str, list[_Token]]]:
    """Split an address-list at "," ":" and ";", each item with the separator that ends it.

    Inside "<...>" nothing splits, so an obs-route (RFC 5322 4.4) stays in its mailbox.
    """
    item: list[_Token] = []
    in_angle = False
    for token in tokens:
        if token.kind == _SPECIAL and token.text in ",:;" and not in_angle:
            yield token.text, item
            item = []
            continue
        item.append(token)
        if token.kind == _SPECIAL and token.text in "<>":
            in_angle = token.text == "<"
    yield ",", item


def _mailbox(item: list[_Token]) -> EmailAddress | None:
    """A name-addr or addr-spec (RFC 5322 3.4), or None for an element with no address."""
    opening = next((i for i, token in enumerate(item) if token.is_special("<")), None)
    if opening is None:
        return _bare_mailbox(item)
    rest = item[opening + 1 :]
    closing = next((i for i, token in enumerate(rest) if token.is_special(">")), len(rest))
    return {"name": _phrase(item[:opening]), "email": _addr_spec(_after_route(rest[:closing]))}


def _bare_mailbox(item: list[_Token]) -> EmailAddress | None:
    """An addr-spec alone; RFC 8621 4.1.2.3: a comment right after it gives the name."""
    words = [i for i, token in enumerate(item) if token.kind != _COMMENT]
    if not words:
        return None
    comments = item[words[-1] + 1 :]
    name = _comment_text(comments[0]) if comments else None
    return {"name": name, "email": _addr_spec(item)}


def _comment_text(comment: _Token) -> str | None:
    """A comment as a display name: parentheses gone, encoded-words decoded as in text."""
    return _name(_decode_unstructured(_unquote(comment.text, "(", ")")))


def _after_route(tokens: list[_Token]) -> list[_Token]:
    """Drop an obs-route ("@a,@b:") from an angle-addr (RFC 5322 4.4); it starts with "@"."""
    words = [token for token in tokens if token.kind != _COMMENT and not token.is_special(",")]
    colons = [i for i, token in enumerate(tokens) if token.is_special(":")]
    if not words or not words[0].is_special("@") or not colons:
        return tokens
    return tokens[colons[-1] + 1 :]


def _addr_spec(tokens: list[_Token]) -> str:
    """The addr-spec without its CFWS (RFC 5322 3.4.1), as written otherwise.

    Words of a malformed one (a draft's "John Doe") keep one space between them, so the
    EmailAddress still shows what was typed (RFC 8621 4.1.2.3 allows any email string).
    """
    parts: list[str] = []
    for token in tokens:
        if token.kind == _COMMENT:
            continue
        if parts and token.spaced and not _joins(parts[-1], token.text):
            parts.append(" ")
        parts.append(token.text)
    return "".join(parts)


def _joins(left: str, right: str) -> bool:
    """Whether two addr-spec pieces belong together across white space ("a . b @ c")."""
    return left.endswith((".", "@")) or right.startswith((".", "@"))


def _phrase(tokens: list[_Token]) -> str | None:
    """A display-name or group name: its words, one space apart, comments dropped.

    Encoded-words are decoded only as whole atoms (RFC 2047 5(3): never inside a quoted
    string), and the white space between two of them is dropped (RFC 2047 6.2).
    """
    parts: list[str] = []
    after_word = False
    for token in tokens:
        if token.kind == _COMMENT:
            continue
        decoded = _decode_encoded_word(token.text) if token.kind == _ATOM else None
        if parts and token.spaced and not (after_word and decoded is not None):
            parts.append(" ")
        parts.append(decoded if decoded is not None else _word(token))
        after_word = decoded is not None
    return _name("".join(parts))


def _word(token: _Token) -> str:
    """A phrase word as text: RFC 8621 4.1.2.3 strips the DQUOTEs and decodes quoted-pairs."""
    return _unquote(token.text, '"', '"') if token.kind == _QUOTED else token.text


# --- MessageIds ------------------------------------------------------------------------------


def as_message_ids(raw: str) -> list[str] | None:
    """MessageIds form (RFC 8621 4.1.2.5): each msg-id without CFWS and "<>"; null if none parse.

    Words between msg-ids are skipped (RFC 5322 4.5.4 obs-phrase in In-Reply-To and
    References), and so are commas, which some mailers put between them. Anything else, a
    msg-id without "@" or without its brackets included, makes the whole value null.
    """
    ids: list[str] = []
    inside: list[_Token] | None = None
    tokens = 0
    for token in _tokens(raw):
        tokens += 1
        if inside is None:
            if token.is_special("<"):
                inside = []
            elif token.kind not in (_ATOM, _QUOTED, _COMMENT) and not token.is_special(","):
                return None
        elif token.is_special(">"):
            msg_id = _msg_id(inside)
            if msg_id is None:
                return None
            ids.append(msg_id)
            inside = None
        else:
            inside.append(token)
    if inside is not None and tokens >= STRUCTURED_TOKENS:
        # The lexer's bound cut the last msg-id: the ids before it are whole.
        inside = None
    return ids if ids and inside is None else None


def _msg_id(tokens: list[_Token]) -> str | None:
    """id-left "@" id-right (RFC 5322 3.6.4, with 4.5.4's CFWS), or None."""
    words = [token for token in tokens if token.kind != _COMMENT]
    specials = [i for i, token in enumerate(words) if token.kind == _SPECIAL]
    if len(specials) != 1 or not words[specials[0]].is_special("@"):
        return None
    if specials[0] in (0, len(words) - 1):
        return None
    return "".join(token.text for token in words)


# --- Date ------------------------------------------------------------------------------------

# RFC 5322 3.3 date-time with 4.3's obsolete forms, over the tokens joined by single spaces
# (comments gone): day-of-week optional, seconds optional, 2- or 3-digit years, named zones.
# RFC 3339 has 4-digit years, so longer ones (and int() of thousands of digits) never match.
_DATE_TIME: Final = re.compile(
    r"(?:(?P<weekday>[a-z]+) , )?(?P<day>[0-9]{1,2}) (?P<month>[a-z]+) (?P<year>[0-9]{2,4}) "
    r"(?P<hour>[0-9]{2}) : (?P<minute>[0-9]{2})(?: : (?P<second>[0-9]{2}))? "
    r"(?P<zone>[+-][0-9]{4}|[a-z]{1,5})",
    re.IGNORECASE | re.ASCII,
)
# A date-time has at most 12 tokens ("Mon , 1 Jan 2024 10 : 00 : 00 +0000"); a value with
# more is no date, however long it goes on.
_DATE_TOKENS: Final = 12
_WEEKDAYS: Final = frozenset({"mon", "tue", "wed", "thu", "fri", "sat", "sun"})
_MONTHS: Final = MappingProxyType(
    {name.lower(): number for number, name in enumerate(calendar.month_abbr) if name}
)
# RFC 5322 4.3 obs-zone, in minutes east of UTC. "UTC" is not in the grammar, but its meaning
# is known, which is the condition 4.3 sets for not reading it as "-0000".
_NAMED_ZONES: Final = MappingProxyType(
    {
        "ut": 0,
        "gmt": 0,
        "utc": 0,
        "est": -300,
        "edt": -240,
        "cst": -360,
        "cdt": -300,
        "mst": -420,
        "mdt": -360,
        "pst": -480,
        "pdt": -420,
    }
)


def as_date(raw: str) -> str | None:
    """Date form (RFC 8621 4.1.2.6): RFC 3339 date-time with the field's own offset, or null.

    The JMAP Date type (RFC 8620 1.4) has uppercase letters and no fractional seconds; a
    leap second stays ":60", which RFC 3339 allows.
    """
    tokens = list(
        itertools.islice((t.text for t in _tokens(raw) if t.kind != _COMMENT), _DATE_TOKENS + 1)
    )
    if len(tokens) > _DATE_TOKENS:
        return None
    match = _DATE_TIME.fullmatch(" ".join(tokens))
    if match is None:
        return None
    weekday = match.group("weekday")
    if weekday is not None and weekday.lower() not in _WEEKDAYS:
        return None
    day = _calendar_date(match["year"], match["month"], match["day"])
    time = _time_of_day(match["hour"], match["minute"], match["second"] or "00")
    offset = _offset(match["zone"])
    if day is None or time is None or offset is None:
        return None
    return f"{day}T{time}{offset}"


def _calendar_date(year_digits: str, month_name: str, day_digits: str) -> str | None:
    """YYYY-MM-DD, or None for a date that does not exist."""
    year = _year(year_digits)
    month = _MONTHS.get(month_name.lower())
    if month is None:
        return None
    day = int(day_digits)
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    return f"{year:04d}-{month:02d}-{day:02d}"


def _year(digits: str) -> int:
    """RFC 5322 4.3: a 2-digit year below 50 is 20xx, else 19xx; a 3-digit year adds 1900."""
    year = int(digits)
    if len(digits) == 2:
        return year + (2000 if year < 50 else 1900)
    if len(digits) == 3:
        return year + 1900
    return year


def _time_of_day(hour: str, minute: str, second: str) -> str | None:
    """hh:mm:ss, or None out of range (RFC 5322 3.3 allows second 60 for leap seconds)."""
    if int(hour) > 23 or int(minute) > 59 or int(second) > 60:
        return None
    return f"{hour}:{minute}:{second}"


def _offset(zone: str) -> str | None:
    """The RFC 3339 time-offset of an RFC 5322 zone.

    "-0000", military zones and unknown names mean "UTC, local offset unknown" (RFC 5322 3.3
    and 4.3), which RFC 3339 4.3 writes "-00:00". "J" is no zone at all.
    """
    if zone[0] in "+-":
        hours, minutes = int(zone[1:3]), int(zone[3:5])
        if hours > 23 or minutes > 59:
            return None
        return f"{zone[0]}{hours:02d}:{minutes:02d}"
    name = zone.lower()
    if name == "j":
        return None
    east = _NAMED_ZONES.get(name)
    if east is None:
        return "-00:00"
    sign = "-" if east < 0 else "+"
    return f"{sign}{abs(east) // 60:02d}:{abs(east) % 60:02d}"


# --- URLs ------------------------------------------------------------------------------------


def as_urls(raw: str) -> list[str] | None:
    """URLs form (RFC 8621 4.1.2.7): the "<url>" list of RFC 2369 2, or null if there is none.

    RFC 2369 2 rules for readers: a value that does not start with "<" (after CFWS) is
    ignored; after a URL, anything but a "," ends the list, as does an item that is not an
    angle-bracketed URL; white space inside the brackets is not part of the URL.
    """
    text = _unfold(raw)
    urls: list[str] = []
    index = _skip_cfws(text, 0)
    while index < len(text) and text[index] == "<":
        closing = text.find(">", index)
        url = _SPACE_RUNS.sub("", text[index + 1 : closing]) if closing > 0 else ""
        if not url:
            break
        urls.append(url)
        index = _skip_cfws(text, closing + 1)
        if not text.startswith(",", index):
            break
        index = _skip_cfws(text, index + 1)
    return urls or None


def _skip_cfws(text: str, index: int) -> int:
    """The index of the first character at or after index that is not white space or comment."""
    while index < len(text):
        if text[index] in " \t\r\n":
            index += 1
        elif text[index] == "(":
            index = _comment_end(text, index)
        else:
            break
    return index


# --- header: properties ----------------------------------------------------------------------


class HeaderForm(StrEnum):
    """The parsed forms of RFC 8621 4.1.2, by the names used after ":as"."""

    RAW = "Raw"
    TEXT = "Text"
    ADDRESSES = "Addresses"
    GROUPED_ADDRESSES = "GroupedAddresses"
    MESSAGE_IDS = "MessageIds"
    DATE = "Date"
    URLS = "URLs"


_FORMS: Final[Mapping[HeaderForm, Callable[[str], FormValue]]] = MappingProxyType(
    {
        HeaderForm.RAW: as_raw,
        HeaderForm.TEXT: as_text,
        HeaderForm.ADDRESSES: as_addresses,
        HeaderForm.GROUPED_ADDRESSES: as_grouped_addresses,
        HeaderForm.MESSAGE_IDS: as_message_ids,
        HeaderForm.DATE: as_date,
        HeaderForm.URLS: as_urls,
    }
)

_ADDRESS_FORMS: Final = frozenset({HeaderForm.ADDRESSES, HeaderForm.GROUPED_ADDRESSES})
# RFC 8621 4.1.2: the forms besides Raw allowed on fields that RFC 5322 (with its obsolete
# Resent-Reply-To, 4.5.6) or RFC 2369 define. Any other field may be fetched in every form.
_DEFINED_FIELD_FORMS: Final[Mapping[str, frozenset[HeaderForm]]] = MappingProxyType(
    {
        **dict.fromkeys(("subject", "comments", "keywords"), frozenset({HeaderForm.TEXT})),
        **dict.fromkeys(
            (
                "from",
                "sender",
                "reply-to",
                "to",
                "cc",
                "bcc",
                "resent-from",
                "resent-sender",
                "resent-reply-to",
                "resent-to",
                "resent-cc",
                "resent-bcc",
            ),
            _ADDRESS_FORMS,
        ),
        **dict.fromkeys(
            ("message-id", "in-reply-to", "references", "resent-message-id"),
            frozenset({HeaderForm.MESSAGE_IDS}),
        ),
        **dict.fromkeys(("date", "resent-date"), frozenset({HeaderForm.DATE})),
        **dict.fromkeys(
            (
                "list-help",
                "list-unsubscribe",
                "list-subscribe",
                "list-post",
                "list-owner",
                "list-archive",
            ),
            frozenset({HeaderForm.URLS}),
        ),
        **dict.fromkeys(("return-path", "received"), frozenset[HeaderForm]()),
    }
)

_PROPERTY_PREFIX: Final = "header:"
# RFC 8621 4.1.3: one or more printable ASCII characters (33-126) except ":".
_FIELD_NAME: Final = re.compile(r"[\x21-\x39\x3b-\x7e]+")


@dataclass(frozen=True, slots=True)
class HeaderSpec:
    """A valid ``header:{name}[:as{form}][:all]`` property."""

    name: str
    form: HeaderForm = HeaderForm.RAW
    all: bool = False


def form_allowed(name: str, form: HeaderForm) -> bool:
    """Whether RFC 8621 4.1.2 lets this field be fetched or set in this form."""
    allowed = _DEFINED_FIELD_FORMS.get(name.lower())
    return form is HeaderForm.RAW or allowed is None or form in allowed


def parse_header_spec(prop: str) -> HeaderSpec | None:
    """The HeaderSpec of a ``header:`` property name, or None if it is not a valid one.

    None covers a bad field name, an unknown form, suffixes out of order or repeated, and a
    form forbidden for the field, which RFC 8621 4.2 makes an invalidArguments error.
    The "header:" prefix, form names and ":all" are case-sensitive like every property name;
    the field name is not.
    """
    if not prop.startswith(_PROPERTY_PREFIX):
        return None
    name, *suffixes = prop[len(_PROPERTY_PREFIX) :].split(":")
    if not _FIELD_NAME.fullmatch(name):
        return None
    form = HeaderForm.RAW
    if suffixes and suffixes[0].startswith("as"):
        try:
            form = HeaderForm(suffixes.pop(0)[len("as") :])
        except ValueError:
            return None
    if suffixes not in ([], ["all"]) or not form_allowed(name, form):
        return None
    return HeaderSpec(name, form, all=bool(suffixes))


def header_property(headers: Sequence[RawHeader], spec: str | HeaderSpec) -> PropertyValue:
    """The value of a ``header:`` property (RFC 8621 4.1.3).

    Without ":all", the last instance of the field (matched case-insensitively) in the form,
    or null when there is none; with ":all", every instance in message order, possibly [].
    ValueError if spec is a string parse_header_spec rejects.
    """
    parsed = parse_header_spec(spec) if isinstance(spec, str) else spec
    if parsed is None:
        raise ValueError(f"not a valid header property: {spec!r}")
    wanted = parsed.name.lower()
    values = [header.value for header in headers if header.name.lower() == wanted]
    parse = _FORMS[parsed.form]
    if parsed.all:
        return [parse(value) for value in values]
    return parse(values[-1]) if values else None


# RFC 8621 4.1.3: each convenience property is identical to one header: property.
CONVENIENCE_PROPERTIES: Final[Mapping[str, HeaderSpec]] = MappingProxyType(
    {
        "messageId": HeaderSpec("Message-ID", HeaderForm.MESSAGE_IDS),
        "inReplyTo": HeaderSpec("In-Reply-To", HeaderForm.MESSAGE_IDS),
        "references": HeaderSpec("References", HeaderForm.MESSAGE_IDS),
        "sender": HeaderSpec("Sender", HeaderForm.ADDRESSES),
        "from": HeaderSpec("From", HeaderForm.ADDRESSES),
        "to": HeaderSpec("To", HeaderForm.ADDRESSES),
        "cc": HeaderSpec("Cc", HeaderForm.ADDRESSES),
        "bcc": HeaderSpec("Bcc", HeaderForm.ADDRESSES),
        "replyTo": HeaderSpec("Reply-To", HeaderForm.ADDRESSES),
        "subject": HeaderSpec("Subject", HeaderForm.TEXT),
        "sentAt": HeaderSpec("Date", HeaderForm.DATE),
    }
)


def convenience_properties(headers: Sequence[RawHeader]) -> dict[str, PropertyValue]:
    """messageId, inReplyTo, references, sender, from, to, cc, bcc, replyTo, subject, sentAt."""
    return {prop: header_property(headers, spec) for prop, spec in CONVENIENCE_PROPERTIES.items()}
