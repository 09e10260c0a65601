"""Pure parsers for IMAP server responses (RFC 3501 / RFC 9051 section 9 and extensions).

Two layers. :func:`parse_response` turns one complete response, as cut by
:class:`gateway.imap.framing.ResponseFramer`, into a :class:`Tagged`, :class:`Untagged` or
:class:`Continuation` whose data is a tree of generic values:

* atoms and numbers -> ``str`` (left as text; the typed parsers convert and validate),
* quoted strings, literals and literal8 -> ``bytes`` (quoted strings unescaped),
* ``NIL`` -> ``None``, parenthesized lists -> ``list``.

The parser is positional, so a quoted string or literal holding ``* ``, ``)`` or CRLF is
never mistaken for protocol syntax. On top sit small typed parsers (LIST, STATUS, FETCH,
ESEARCH, ...) that check the shape they expect. Anything malformed raises
:class:`ProtocolError`, never IndexError or ValueError.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal, TypeAlias, TypeVar

from gateway.imap import mutf7
from gateway.imap.dates import MONTHS
from gateway.imap.errors import CommandFailed, ProtocolError
from gateway.imap.fetch import BodySection
from gateway.imap.sequence import UidSet, parse_ranges

Value: TypeAlias = "str | bytes | list[Value] | None"
Status = Literal["OK", "NO", "BAD"]
_T = TypeVar("_T")

_STATUS_KEYWORDS = frozenset({"OK", "NO", "BAD", "BYE", "PREAUTH"})
_TAGGED_STATUSES: dict[str, Status] = {"OK": "OK", "NO": "NO", "BAD": "BAD"}

# RFC 3501 9 ATOM-CHAR, as a regex class body: CHAR minus SP, CTL, "(", ")", "{", DQUOTE,
# "\" and (where noted) "]". List-wildcards stay in, so that "\*" (flag-perm) is an atom.
_ATOM_CLASS = rb'[^\x00-\x20\x7f-\xff(){"\\%s]'
# RFC 3501 9 quoted: only DQUOTE and backslash may be escaped. 8-bit octets are let through
# for RFC 6855 UTF8=ACCEPT sessions.
_QUOTED = rb'"(?:[^"\\\r\n\x00]|\\["\\])*"'
# A fetch item with a section: "BODY[HEADER.FIELDS (SUBJECT FROM)]<0>" is ONE token.
_SECTION = (
    rb"(?i:BODY(?:\.PEEK)?|BINARY(?:\.PEEK|\.SIZE)?)"
    rb'\[(?:[^\]"{\x00-\x1f\x7f-\xff]|' + _QUOTED + rb")*\]" + _ATOM_CLASS % rb"\[\]" + rb"*"
)
# One token per match, without groups so that findall returns whole tokens. The final "."
# takes any octet nothing else accepts, so no input is skipped unseen.
_DATA_TOKEN = re.compile(
    rb" |\(|\)|" + _QUOTED + rb"|" + _SECTION + rb"|\\?" + _ATOM_CLASS % rb"" + rb"+|.",
    re.DOTALL,
)
# Inside "[code args]" a "]" is not an atom octet but the end of the code.
_CODE_TOKEN = re.compile(
    rb" |\(|\)|\]|" + _QUOTED + rb"|\\?" + _ATOM_CLASS % rb"\]" + rb"+|.", re.DOTALL
)
# Single octets that are whole atoms; any other one-octet token is garbage.
_ATOM_OCTETS = frozenset(bytes([octet]) for octet in range(0x21, 0x7F) if octet not in b'(){"\\')
_QUOTED_ESCAPE = re.compile(rb'\\(["\\])')
_LITERAL = re.compile(rb"~?\{([0-9]{1,20})\}\r\n")
_SECTION_PREFIXES = (b"BODY[", b"BODY.PEEK[", b"BINARY[", b"BINARY.PEEK[", b"BINARY.SIZE[")
# RFC 3501 9: tag = 1*<any ASTRING-CHAR except "+">; the status follows after one space.
_TAGGED_HEAD = re.compile(rb'([^\x00-\x20\x7f-\xff(){%*"\\+]+) ([A-Za-z]+)')
_UNTAGGED_HEAD = re.compile(rb"\* (?:([0-9]{1,20}) )?([A-Za-z][A-Za-z0-9._-]*)")
_CODE_NAME = re.compile(rb"\[(" + _ATOM_CLASS % rb"\]" + rb"+)")

# What the previous token was, which decides what may follow (see _values).
_START, _VALUE, _LIST_END, _SPACE = range(4)
_SP, _LPAREN, _RPAREN, _DQUOTE, _RBRACKET = 0x20, 0x28, 0x29, 0x22, 0x5D


@dataclass(frozen=True, slots=True)
class ResponseCode:
    """``[NAME args]`` from resp-text (RFC 3501 7.1); args are generic values.

    A code whose arguments do not tokenize (the grammar allows free text) has its raw text
    as the single ``str`` argument.
    """

    name: str
    args: list[Value] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Tagged:
    """Completion of the command with this tag."""

    tag: str
    status: Status
    code: ResponseCode | None
    text: str


@dataclass(frozen=True, slots=True)
class Untagged:
    """``* ...``: a status (OK/NO/BAD/PREAUTH/BYE with code and text) or data.

    Data responses have ``keyword`` (``FETCH``, ``LIST``, ...), ``number`` when the keyword
    is preceded by one (``* 23 EXISTS``) and the remaining tokens in ``values``.
    """

    keyword: str
    number: int | None = None
    values: list[Value] = field(default_factory=list)
    code: ResponseCode | None = None
    text: str = ""

    @property
    def is_status(self) -> bool:
        """True for OK/NO/BAD/PREAUTH/BYE, which carry code and text instead of values."""
        return self.keyword in _STATUS_KEYWORDS

    @property
    def status(self) -> str | None:
        """The keyword of a status response (``BYE``, ``PREAUTH``, ...), else None."""
        return self.keyword if self.is_status else None


@dataclass(frozen=True, slots=True)
class Continuation:
    """``+ ...``: the server waits for a literal or a SASL response (text is then base64)."""

    code: ResponseCode | None
    text: str


Response: TypeAlias = Tagged | Untagged | Continuation


def _values(data: bytes, pos: int, in_code: bool) -> tuple[list[Value], int]:
    """Generic values from ``pos`` to the end, or in a response code to its "]".

    Returns the values and the offset where they stopped. RFC 3501 spacing is enforced:
    exactly one SP between values, none after "(" or before ")", except that ")(" may
    touch (BODYSTRUCTURE parts, THREAD lists). This is the parser's hot loop, so tokens
    come from one findall per literal-free stretch and structure is handled inline.
    """
    pattern = _CODE_TOKEN if in_code else _DATA_TOKEN
    stack: list[list[Value]] = [[]]
    state = _START
    while True:
        literal = None if in_code else _LITERAL.search(data, pos)
        stop = len(data) if literal is None else literal.start()
        for token in pattern.findall(data, pos, stop):
            first = token[0]
            if first == _SP:
                if state in (_START, _SPACE):
                    raise ProtocolError(f"unexpected space at offset {pos}")
                state = _SPACE
            elif first == _LPAREN:
                if state == _VALUE:
                    raise ProtocolError(f"expected a space at offset {pos}")
                stack.append([])
                stack[-2].append(stack[-1])
                state = _START
            elif first == _RPAREN:
                if len(stack) == 1 or state == _SPACE:
                    raise ProtocolError(f"unexpected ')' at offset {pos}")
                stack.pop()
                state = _LIST_END
            elif first == _RBRACKET and in_code:
                return _finish(stack, state, trailing_space_ok=False), pos
            else:
                if state in (_VALUE, _LIST_END):
                    raise ProtocolError(f"expected a space at offset {pos}")
                stack[-1].append(_scalar(token, pos))
                state = _VALUE
            pos += len(token)
        if literal is None:
            break
        pos = literal.end() + int(literal.group(1))
        if pos > len(data):
            raise ProtocolError(f"literal at offset {literal.start()} is truncated")
        if state in (_VALUE, _LIST_END):
            raise ProtocolError(f"expected a space at offset {literal.start()}")
        stack[-1].append(data[literal.end() : pos])
        state = _VALUE
    if in_code:
        raise ProtocolError("unterminated response code")
    # Tolerated quirk: a trailing space before CRLF at the top level ("* SEARCH 1 ").
    return _finish(stack, state, trailing_space_ok=True), pos


def _finish(stack: list[list[Value]], state: int, trailing_space_ok: bool) -> list[Value]:
    if len(stack) != 1:
        raise ProtocolError("missing ')' at end of response")
    if state == _SPACE and not trailing_space_ok:
        raise ProtocolError("unexpected space before the end")
    return stack[0]


def _scalar(token: bytes, pos: int) -> Value:
    """A quoted string, atom, NIL or section token; any other octet is an error."""
    if token[0] == _DQUOTE:
        if len(token) < 2:
            raise ProtocolError(f"malformed quoted string at offset {pos}")
        inner = token[1:-1]
        return _QUOTED_ESCAPE.sub(rb"\1", inner) if b"\\" in inner else inner
    if len(token) == 1 and token not in _ATOM_OCTETS:
        raise ProtocolError(f"unexpected octet at offset {pos}")
    if b"[" in token:
        _check_section(token, pos)
    if len(token) == 3 and token.upper() == b"NIL":
        return None
    return token.decode("ascii")


def _check_section(token: bytes, pos: int) -> None:
    """A fetch section must be one balanced token (the section pattern matched it all)."""
    upper = token.upper()
    if upper.startswith(_SECTION_PREFIXES) and (
        b"]" not in token or (b'"' not in token and token.count(b"(") != token.count(b")"))
    ):
        raise ProtocolError(f"malformed fetch section at offset {pos}")


def parse_response(raw: bytes) -> Response:
    """Parse one complete response (framer output, final CRLF removed)."""
    if raw.startswith(b"+"):
        return _continuation(raw)
    if raw.startswith(b"* "):
        return _untagged(raw)
    return _tagged(raw)


def _continuation(raw: bytes) -> Continuation:
    if raw == b"+":
        return Continuation(None, "")  # a bare "+" is a common server quirk
    if raw[1:2] != b" ":
        raise ProtocolError("expected a space after '+'")
    code, text = _resp_text(raw, 2)
    return Continuation(code, text)


def _tagged(raw: bytes) -> Tagged:
    head = _TAGGED_HEAD.match(raw)
    status = None if head is None else _TAGGED_STATUSES.get(head.group(2).upper().decode())
    if head is None or status is None:
        raise ProtocolError("expected a tag and OK, NO or BAD")
    code, text = _optional_resp_text(raw, head.end())
    return Tagged(head.group(1).decode("ascii"), status, code, text)


def _untagged(raw: bytes) -> Untagged:
    head = _UNTAGGED_HEAD.match(raw)
    if head is None:
        raise ProtocolError("untagged response has no valid keyword")
    keyword = head.group(2).decode("ascii").upper()
    number = None if head.group(1) is None else int(head.group(1))
    if keyword in _STATUS_KEYWORDS and number is None:
        code, text = _optional_resp_text(raw, head.end())
        return Untagged(keyword, code=code, text=text)
    if head.end() == len(raw):
        return Untagged(keyword, number)
    if raw[head.end()] != 0x20:
        raise ProtocolError(f"expected a space at offset {head.end()}")
    return Untagged(keyword, number, _values(raw, head.end() + 1, in_code=False)[0])


def _optional_resp_text(raw: bytes, pos: int) -> tuple[ResponseCode | None, str]:
    """RFC 9051 makes the text optional; some servers send ``A1 OK`` with nothing after."""
    if pos == len(raw):
        return None, ""
    if raw[pos] != 0x20:
        raise ProtocolError(f"expected a space at offset {pos}")
    return _resp_text(raw, pos + 1)


def _resp_text(raw: bytes, pos: int) -> tuple[ResponseCode | None, str]:
    """RFC 3501 9 resp-text: optional ``[code]``, then human-readable text."""
    code = None
    if raw[pos : pos + 1] == b"[":
        code, pos = _response_code(raw, pos)
        if pos < len(raw):
            if raw[pos] != 0x20:
                raise ProtocolError(f"expected a space after the response code at {pos}")
            pos += 1
    rest = raw[pos:]
    if b"\r" in rest or b"\n" in rest:
        raise ProtocolError("line break inside response text")
    # RFC 9051 allows UTF-8 here; the text is only for humans and logs.
    return code, rest.decode("utf-8", "replace")


def _response_code(raw: bytes, pos: int) -> tuple[ResponseCode, int]:
    """``[NAME]`` or ``[NAME args]``; returns the code and the offset after "]"."""
    name = _CODE_NAME.match(raw, pos)
    if name is None:
        raise ProtocolError(f"malformed response code at offset {pos}")
    after = name.end()
    if raw[after : after + 1] == b"]":
        return ResponseCode(name.group(1).decode("ascii").upper()), after + 1
    if raw[after : after + 1] != b" ":
        raise ProtocolError(f"malformed response code at offset {pos}")
    args, end = _code_arguments(raw, after + 1)
    return ResponseCode(name.group(1).decode("ascii").upper(), args), end + 1


def _code_arguments(raw: bytes, pos: int) -> tuple[list[Value], int]:
    try:
        return _values(raw, pos, in_code=True)
    except ProtocolError:
        pass
    # RFC 3501 9: resp-text-code = atom [SP 1*<any TEXT-CHAR except "]">]
    end = raw.find(b"]", pos)
    if end == -1:
        raise ProtocolError("unterminated response code")
    return [raw[pos:end].decode("utf-8", "replace")], end


# ---------------------------------------------------------------------------------------
# Shared checks for the typed parsers


def _int(value: Value, what: str) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        return int(value)
    raise ProtocolError(f"expected a number for {what}")


def _atom(value: Value, what: str) -> str:
    if isinstance(value, str):
        return value
    raise ProtocolError(f"expected an atom for {what}")


def _atom_list(value: Value, what: str) -> list[str]:
    """A parenthesized list of atoms, such as a flag list."""
    return [_atom(item, what) for item in _items(value, what)]


def _items(value: Value, what: str) -> list[Value]:
    if isinstance(value, list):
        return value
    raise ProtocolError(f"expected a parenthesized list for {what}")


def _text(value: Value, what: str) -> str:
    """An atom or a string, as text; strings must be UTF-8 (ASCII in practice)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"{what} is not UTF-8") from None
    raise ProtocolError(f"expected a string for {what}")


def _pairs(
    values: Sequence[Value], what: str, name: Callable[[Value, str], str] = _atom
) -> Iterable[tuple[str, Value]]:
    """``NAME value NAME value ...`` with names upper-cased."""
    if len(values) % 2:
        raise ProtocolError(f"odd number of tokens in {what}")
    for index in range(0, len(values), 2):
        yield name(values[index], what).upper(), values[index + 1]


def _expect_keyword(response: Untagged, *keywords: str) -> list[Value]:
    if response.keyword not in keywords:
        raise ProtocolError(f"expected a {'/'.join(keywords)} response, got {response.keyword}")
    return response.values


def _uid_set(value: Value, what: str) -> UidSet:
    try:
        return UidSet.parse(_atom(value, what))
    except ValueError:
        raise ProtocolError(f"invalid sequence set in {what}") from None


def _object_id(value: Value, what: str) -> str | None:
    """RFC 8474 5: ``(id)`` or NIL."""
    return None if value is None else _single(_items(value, what), what)


def _take(data: dict[str, Value], name: str, convert: Callable[[Value, str], _T]) -> _T | None:
    """Convert ``data[name]``; None when the item is absent or NIL."""
    value = data.get(name)
    return None if value is None else convert(value, name)


def mailbox_raw(value: Value) -> bytes:
    """A mailbox name token as wire bytes, to be sent back exactly as the server wrote it.

    RFC 3501 9: a mailbox is an astring, so a bare ``NIL`` atom names the mailbox "NIL".
    """
    if value is None:
        return b"NIL"
    if isinstance(value, str):
        return value.encode("ascii")
    if isinstance(value, bytes):
        return value
    raise ProtocolError("expected a mailbox name")


def decode_mailbox_name(raw: bytes, *, utf8: bool = False) -> str:
    """Wire bytes -> name: modified UTF-7 (RFC 3501 5.1.3), or UTF-8 under UTF8=ACCEPT.

    RFC 3501 5.1: INBOX is case-insensitive, so every spelling becomes "INBOX".
    """
    if raw.upper() == b"INBOX":
        return "INBOX"
    try:
        return raw.decode("utf-8") if utf8 else mutf7.decode(raw)
    except ValueError:
        raise ProtocolError("mailbox name is not validly encoded") from None


# ---------------------------------------------------------------------------------------
# CAPABILITY, ENABLED, response codes


def parse_capabilities(values: Sequence[Value]) -> frozenset[str]:
    """Capabilities, upper-cased (RFC 3501 7.2.1: names are case-insensitive).

    Takes values, not a response, because they come both from ``* CAPABILITY`` (its
    ``values``) and from a ``[CAPABILITY ...]`` code (its ``args``).
    """
    return frozenset(_atom(value, "capability").upper() for value in values)


def parse_enabled(response: Untagged) -> frozenset[str]:
    """Extensions confirmed by ``* ENABLED`` (RFC 5161 3.2), upper-cased."""
    values = _expect_keyword(response, "ENABLED")
    return frozenset(_atom(value, "ENABLED").upper() for value in values)


@dataclass(frozen=True, slots=True)
class AppendUid:
    """RFC 4315 3: ``[APPENDUID uidvalidity uids]`` (several UIDs after MULTIAPPEND)."""

    uidvalidity: int
    uids: UidSet


@dataclass(frozen=True, slots=True)
class CopyUid:
    """RFC 4315 3: ``[COPYUID uidvalidity source destination]``.

    The ranges are kept in the order the server wrote them: the n-th source UID became the
    n-th destination UID.
    """

    uidvalidity: int
    source: tuple[tuple[int, int], ...]
    destination: tuple[tuple[int, int], ...]

    def pairs(self) -> Iterable[tuple[int, int]]:
        """(source UID, destination UID) pairs, lazily."""
        return zip(_expand(self.source), _expand(self.destination), strict=True)


def _expand(ranges: Iterable[tuple[int, int]]) -> Iterable[int]:
    for low, high in ranges:
        yield from range(low, high + 1)


def parse_appenduid(code: ResponseCode) -> AppendUid:
    """The APPENDUID code of a tagged OK to APPEND."""
    args = _code_args(code, "APPENDUID", 2)
    return AppendUid(_int(args[0], "UIDVALIDITY"), _uid_set(args[1], "APPENDUID"))


def parse_copyuid(code: ResponseCode) -> CopyUid:
    """The COPYUID code of a tagged OK to COPY, or of an untagged OK during MOVE."""
    args = _code_args(code, "COPYUID", 3)
    source, destination = (_ordered_ranges(arg) for arg in args[1:])
    if sum(h - lo + 1 for lo, h in source) != sum(h - lo + 1 for lo, h in destination):
        raise ProtocolError("COPYUID source and destination sets differ in size")
    return CopyUid(_int(args[0], "UIDVALIDITY"), source, destination)


def parse_modified(code: ResponseCode) -> UidSet:
    """RFC 7162 3.1.3: ``[MODIFIED set]`` of a STORE with UNCHANGEDSINCE: the messages it
    left alone because they changed after the given modseq (UIDs for UID STORE)."""
    return _uid_set(_code_args(code, "MODIFIED", 1)[0], "MODIFIED")


def _ordered_ranges(value: Value) -> tuple[tuple[int, int], ...]:
    try:
        return tuple(parse_ranges(_atom(value, "COPYUID")))
    except ValueError:
        raise ProtocolError("invalid sequence set in COPYUID") from None


def _code_args(code: ResponseCode, name: str, count: int) -> list[Value]:
    if code.name != name or len(code.args) != count:
        raise ProtocolError(f"expected [{name}] with {count} arguments")
    return code.args


# ---------------------------------------------------------------------------------------
# LIST (RFC 3501 7.2.2, RFC 5258 extended data, RFC 6154 special-use)

# RFC 6154 2 special-use attributes, plus RFC 8457 \Important.
SPECIAL_USE_ATTRIBUTES = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash", "\\Important"}
)
# RFC 3501 7.2.2 and RFC 5258 3 (CHILDREN, LIST-EXTENDED) name attributes.
_NAME_ATTRIBUTES = frozenset(
    {"\\Noinferiors", "\\Noselect", "\\Marked", "\\Unmarked", "\\HasChildren",
     "\\HasNoChildren", "\\NonExistent", "\\Subscribed", "\\Remote"}
)  # fmt: skip
_CANONICAL_ATTRIBUTES = {name.upper(): name for name in _NAME_ATTRIBUTES | SPECIAL_USE_ATTRIBUTES}


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One ``* LIST`` (or LSUB) line.

    Attributes are case-insensitive (RFC 3501 7.2.2); known ones are normalised to their
    RFC spelling so that ``"\\Sent" in entry.attributes`` works whatever the server sent.
    ``raw_name`` is what must be sent back to address this mailbox.
    """

    attributes: frozenset[str]
    delimiter: str | None
    name: str
    raw_name: bytes
    extended: dict[str, Value] = field(default_factory=dict)

    def has_attribute(self, attribute: str) -> bool:
        """Case-insensitive attribute test, also for attributes not in the known table."""
        wanted = attribute.upper()
        return any(name.upper() == wanted for name in self.attributes)

    @property
    def special_use(self) -> str | None:
        """The RFC 6154 special-use attribute, if any (servers send at most one per box)."""
        return next((a for a in sorted(self.attributes) if a in SPECIAL_USE_ATTRIBUTES), None)

    @property
    def selectable(self) -> bool:
        """False for ``\\Noselect`` and ``\\NonExistent`` (RFC 5258 3: implies Noselect)."""
        return not (self.has_attribute("\\Noselect") or self.has_attribute("\\NonExistent"))


def parse_list(response: Untagged, *, utf8: bool = False) -> ListEntry:
    """A LIST/LSUB/XLIST line; ``utf8`` when UTF8=ACCEPT (RFC 6855) is enabled."""
    values = _expect_keyword(response, "LIST", "LSUB", "XLIST")
    if len(values) not in (3, 4):
        raise ProtocolError("LIST response has the wrong number of fields")
    attributes = frozenset(
        _CANONICAL_ATTRIBUTES.get(flag.upper(), flag)
        for flag in (_atom(v, "LIST attribute") for v in _items(values[0], "LIST attributes"))
    )
    raw = mailbox_raw(values[2])
    extended = dict(_list_extended(values[3])) if len(values) == 4 else {}
    return ListEntry(
        attributes, _delimiter(values[1]), decode_mailbox_name(raw, utf8=utf8), raw, extended
    )


def _delimiter(value: Value) -> str | None:
    """RFC 3501 9: DQUOTE QUOTED-CHAR DQUOTE / nil; NIL means a flat namespace."""
    if value is None:
        return None
    if isinstance(value, bytes) and len(value) == 1 and value.isascii():
        return value.decode("ascii")
    raise ProtocolError("LIST hierarchy delimiter is not one character")


def _list_extended(value: Value) -> Iterable[tuple[str, Value]]:
    """RFC 5258 9: mbox-list-extended-item = tag SP tagged-ext-val, tag an astring."""
    return _pairs(_items(value, "LIST extended data"), "LIST extended data", _text)


# ---------------------------------------------------------------------------------------
# STATUS (RFC 3501 7.2.4, RFC 7162 HIGHESTMODSEQ, RFC 8438 SIZE, RFC 8474 MAILBOXID)

# Items whose values are identifiers, even when they happen to look like numbers.
_TEXT_STATUS_ITEMS = frozenset({"MAILBOXID", "X-GUID"})


@dataclass(frozen=True, slots=True)
class StatusEntry:
    """``* STATUS name (ITEM value ...)``: numeric items and text items apart."""

    name: str
    raw_name: bytes
    items: dict[str, int]
    text_items: dict[str, str]

    @property
    def mailbox_id(self) -> str | None:
        """RFC 8474 MAILBOXID, when the server has OBJECTID (Cyrus)."""
        return self.text_items.get("MAILBOXID")


def parse_status(response: Untagged, *, utf8: bool = False) -> StatusEntry:
    """A STATUS response, also as sent for ``LIST ... RETURN (STATUS ...)`` (RFC 5819)."""
    values = _expect_keyword(response, "STATUS")
    if len(values) != 2:
        raise ProtocolError("STATUS response has the wrong number of fields")
    raw = mailbox_raw(values[0])
    numbers: dict[str, int] = {}
    texts: dict[str, str] = {}
    for name, value in _pairs(_items(values[1], "STATUS items"), "STATUS items"):
        if value is None:
            continue  # e.g. RFC 7889 "APPENDLIMIT NIL": no number to report
        if name in _TEXT_STATUS_ITEMS or not isinstance(value, str):
            texts[name] = _status_text(value, name)
        else:
            numbers[name] = _int(value, name)
    return StatusEntry(decode_mailbox_name(raw, utf8=utf8), raw, numbers, texts)


def _status_text(value: Value, name: str) -> str:
    """RFC 8474 ``MAILBOXID (id)``, or a plain atom/string such as Dovecot's X-GUID."""
    if isinstance(value, list):
        return _single(value, name)
    return _text(value, name)


def _single(items: list[Value], what: str) -> str:
    return _atom(_single_value(items, what), what)


# ---------------------------------------------------------------------------------------
# FETCH (RFC 3501 7.4.2, RFC 7162 MODSEQ, RFC 8474 EMAILID/THREADID, RFC 8970 PREVIEW)

_PARTIAL_RANGE = re.compile(r"<([0-9]+)\.[0-9]+>\Z")
_INTERNALDATE = re.compile(
    rb" ?([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})"  # date-day-fixed "-" date-month "-" date-year
    rb" ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"  # SP time SP zone
)
_MONTH_NUMBERS = {name.upper().encode(): number for number, name in enumerate(MONTHS, 1)}


def fetch_key(name: str) -> str:
    """The key under which a requested fetch item appears in the response.

    RFC 3501 7.4.2: the server answers ``BODY.PEEK[...]`` as ``BODY[...]`` and a partial
    ``<0.100>`` as ``<0>``; item names are case-insensitive, so keys are upper-cased.
    """
    key = name.upper().replace(".PEEK[", "[", 1)
    return _PARTIAL_RANGE.sub(r"<\1>", key)


@dataclass(frozen=True, slots=True)
class FetchItem:
    """``* n FETCH (...)``: the sequence number and the items by upper-cased name."""

    seq: int
    items: dict[str, Value]

    def get(self, name: str | BodySection) -> Value:
        """The generic value of an item (BODYSTRUCTURE, ENVELOPE, ...) or None if absent."""
        return self.items.get(fetch_key(str(name)))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str | BodySection) and fetch_key(str(name)) in self.items

    @property
    def uid(self) -> int | None:
        return self._optional("UID", _int)

    @property
    def flags(self) -> list[str] | None:
        return self._optional("FLAGS", _atom_list)

    @property
    def modseq(self) -> int | None:
        """RFC 7162 3.1.4.1: ``MODSEQ (n)``."""
        return self._optional("MODSEQ", _parenthesized_int)

    @property
    def size(self) -> int | None:
        return self._optional("RFC822.SIZE", _int)

    @property
    def internaldate(self) -> datetime | None:
        return self._optional("INTERNALDATE", _internaldate)

    @property
    def email_id(self) -> str | None:
        return _object_id(self.items.get("EMAILID"), "EMAILID")

    @property
    def thread_id(self) -> str | None:
        """RFC 8474 5.2: NIL when the server keeps no thread for this message."""
        return _object_id(self.items.get("THREADID"), "THREADID")

    @property
    def x_guid(self) -> str | None:
        """Dovecot's message GUID, kept by COPY and MOVE."""
        return self._optional("X-GUID", _text)

    @property
    def preview(self) -> str | None:
        """RFC 8970 ``PREVIEW nstring``; the draft form ``(FUZZY "text")`` is accepted too."""
        value = self.items.get("PREVIEW")
        if isinstance(value, list) and len(value) == 2:
            value = value[1]
        if value is None:
            return None
        if not isinstance(value, bytes):
            raise ProtocolError("PREVIEW is not a string")
        return value.decode("utf-8", "replace")

    def header_fields(self) -> bytes | None:
        """The ``BODY[HEADER.FIELDS (...)]`` section, however the server spells the list."""
        for key, value in self.items.items():
            if key.startswith("BODY[HEADER.FIELDS") and isinstance(value, bytes):
                return value
        return None

    def section(self, name: str | BodySection) -> bytes | None:
        """A body section (``BODY[...]``, ``BINARY[...]``) as bytes; None if NIL or absent."""
        value = self.get(name)
        if value is None or isinstance(value, bytes):
            return value
        raise ProtocolError(f"{fetch_key(str(name))} is not a string")

    def _optional(self, name: str, convert: Callable[[Value, str], _T]) -> _T | None:
        return _take(self.items, name, convert)


def parse_fetch(response: Untagged) -> FetchItem:
    """A FETCH response; the server may send any items, solicited or not."""
    values = _expect_keyword(response, "FETCH")
    if response.number is None or response.number == 0 or len(values) != 1:
        raise ProtocolError("FETCH response needs a message number and one list")
    items = dict(_pairs(_items(values[0], "FETCH"), "FETCH"))
    return FetchItem(response.number, items)


def fetches_by_uid(responses: Iterable[Untagged]) -> dict[int, FetchItem]:
    """FETCH responses merged per UID, later items winning.

    A server may send several FETCH responses for one message during a command: the one
    asked for, and unsolicited flag updates made by other sessions (RFC 3501 7.4.2,
    RFC 7162 3.1.4 with CONDSTORE). Merged, the requested items are never lost to a later
    FLAGS-only response; responses without a UID (not about a message of a UID command) are
    left out.
    """
    merged: dict[int, FetchItem] = {}
    for response in responses:
        if response.keyword != "FETCH":
            continue
        item = parse_fetch(response)
        uid = item.uid
        if uid is None:
            continue
        earlier = merged.get(uid)
        merged[uid] = (
            item if earlier is None else FetchItem(item.seq, {**earlier.items, **item.items})
        )
    return merged


def _internaldate(value: Value, what: str) -> datetime:
    """RFC 3501 9 date-time: ``"17-Jul-1996 02:44:25 -0700"`` -> aware datetime."""
    match = _INTERNALDATE.fullmatch(value) if isinstance(value, bytes) else None
    month = _MONTH_NUMBERS.get(match.group(2).upper()) if match else None
    if match is None or month is None:
        raise ProtocolError(f"malformed {what}")
    day, year, hour, minute, second = (int(match.group(i)) for i in (1, 3, 4, 5, 6))
    offset = timedelta(hours=int(match.group(8)), minutes=int(match.group(9)))
    zone = timezone(-offset if match.group(7) == b"-" else offset)
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:
        raise ProtocolError(f"impossible date in {what}") from None


# ---------------------------------------------------------------------------------------
# BODYSTRUCTURE (RFC 3501 7.4.2)


@dataclass(frozen=True, slots=True)
class TextSection:
    """A text part of a message as BODYSTRUCTURE describes it, and its section number."""

    section: str
    subtype: str  # lower case: "plain", "html"
    charset: str | None
    encoding: str  # lower case Content-Transfer-Encoding
    size: int  # encoded octets


# Multiparts nested deeper than this in a BODYSTRUCTURE are not entered: a server that does
# not bound nesting itself (Cyrus) would otherwise lead the walk past Python's recursion limit.
BODYSTRUCTURE_DEPTH = 64


def text_sections(structure: Value, prefix: str = "", depth: int = 0) -> list[TextSection]:
    """The text parts of a BODYSTRUCTURE in section order, attachments and the insides of
    attached messages left out: the parts a preview can come from."""
    if not isinstance(structure, list) or not structure:
        return []
    if isinstance(structure[0], list):  # multipart: the parts, then the subtype
        found: list[TextSection] = []
        if depth >= BODYSTRUCTURE_DEPTH:
            return found
        parts = itertools.takewhile(lambda p: isinstance(p, list), structure)
        for index, part in enumerate(parts):
            found += text_sections(part, f"{prefix}{index + 1}.", depth + 1)
        return found
    section = prefix.rstrip(".") or "1"
    if len(structure) < 7 or _lower(structure[0]) != "text":
        return []
    # body-type-text: ... size, lines, then the extension data: md5, disposition, ...
    disposition = structure[9] if len(structure) > 9 else None
    if isinstance(disposition, list) and disposition and _lower(disposition[0]) == "attachment":
        return []
    params = structure[2] if isinstance(structure[2], list) else []
    names = [_lower(v) for v in params[::2]]
    charset = params[names.index("charset") * 2 + 1] if "charset" in names else None
    size = structure[6]
    return [
        TextSection(
            section,
            _lower(structure[1]),
            charset.decode("ascii", "replace") if isinstance(charset, bytes) else None,
            _lower(structure[5]) or "7bit",
            int(size) if isinstance(size, str | int) and str(size).isdigit() else 0,
        )
    ]


def _lower(value: Value) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").lower()
    return value.lower() if isinstance(value, str) else ""


# ---------------------------------------------------------------------------------------
# SEARCH, ESEARCH, VANISHED


@dataclass(frozen=True, slots=True)
class SearchResult:
    """``* SEARCH n ...`` with the RFC 7162 3.1.5 ``(MODSEQ n)`` suffix when present."""

    numbers: list[int]
    modseq: int | None = None


def parse_search(response: Untagged) -> SearchResult:
    """SEARCH, and SORT (RFC 5256 4), whose answer has the same shape."""
    values = list(_expect_keyword(response, "SEARCH", "SORT"))
    modseq = None
    if values and isinstance(values[-1], list):
        pairs = dict(_pairs(_items(values.pop(), "SEARCH"), "SEARCH MODSEQ"))
        if set(pairs) != {"MODSEQ"}:
            raise ProtocolError("unexpected data after SEARCH results")
        modseq = _int(pairs["MODSEQ"], "MODSEQ")
    return SearchResult([_nz_number(v, "SEARCH") for v in values], modseq)


def _parenthesized_int(value: Value, what: str) -> int:
    return _int(_single(_items(value, what), what), what)


def _nz_number(value: Value, what: str) -> int:
    number = _int(value, what)
    if number == 0:
        raise ProtocolError(f"zero is not a valid number in {what}")
    return number


@dataclass(frozen=True, slots=True)
class EsearchResult:
    """RFC 4731 ``* ESEARCH``; ``all`` holds UIDs when ``uid`` is set, else sequence numbers."""

    tag: str | None = None
    uid: bool = False
    min: int | None = None
    max: int | None = None
    count: int | None = None
    all: UidSet | None = None
    modseq: int | None = None  # RFC 7162 3.1.5
    extra: dict[str, Value] = field(default_factory=dict)


def parse_esearch(response: Untagged) -> EsearchResult:
    """RFC 4731 4: ESEARCH [search-correlator] [SP "UID"] *(SP search-return-data)."""
    values = list(_expect_keyword(response, "ESEARCH"))
    tag = _search_correlator(values.pop(0)) if values and isinstance(values[0], list) else None
    uid = bool(values) and isinstance(values[0], str) and values[0].upper() == "UID"
    data = dict(_pairs(values[1:] if uid else values, "ESEARCH"))
    return EsearchResult(
        tag,
        uid,
        min=_take(data, "MIN", _nz_number),
        max=_take(data, "MAX", _nz_number),
        count=_take(data, "COUNT", _int),
        all=_take(data, "ALL", _uid_set),
        modseq=_take(data, "MODSEQ", _int),
        extra={k: v for k, v in data.items() if k not in _ESEARCH_KNOWN},
    )


_ESEARCH_KNOWN = frozenset({"MIN", "MAX", "COUNT", "ALL", "MODSEQ"})


def _search_correlator(value: Value) -> str:
    """RFC 4731 4: ``(TAG "A282")``."""
    pairs = dict(_pairs(_items(value, "ESEARCH correlator"), "ESEARCH correlator"))
    if set(pairs) != {"TAG"}:
        raise ProtocolError("ESEARCH correlator is not (TAG ...)")
    return _text(pairs["TAG"], "ESEARCH tag")


@dataclass(frozen=True, slots=True)
class Vanished:
    """RFC 7162 3.2.10: expunged UIDs; ``earlier`` for the catch-up form after QRESYNC."""

    earlier: bool
    uids: UidSet


def parse_vanished(response: Untagged) -> Vanished:
    values = _expect_keyword(response, "VANISHED")
    earlier = len(values) == 2
    if len(values) not in (1, 2) or (earlier and not _is_earlier(values[0])):
        raise ProtocolError("malformed VANISHED response")
    return Vanished(earlier, _uid_set(values[-1], "VANISHED"))


def _is_earlier(value: Value) -> bool:
    return isinstance(value, list) and len(value) == 1 and str(value[0]).upper() == "EARLIER"


# ---------------------------------------------------------------------------------------
# NAMESPACE (RFC 2342)


@dataclass(frozen=True, slots=True)
class Namespace:
    prefix: str
    delimiter: str | None


@dataclass(frozen=True, slots=True)
class Namespaces:
    personal: tuple[Namespace, ...]
    other_users: tuple[Namespace, ...]
    shared: tuple[Namespace, ...]


def parse_namespace(response: Untagged, *, utf8: bool = False) -> Namespaces:
    """``* NAMESPACE (("" "/")) NIL NIL``; per-namespace extension data is ignored."""
    values = _expect_keyword(response, "NAMESPACE")
    if len(values) != 3:
        raise ProtocolError("NAMESPACE response needs three groups")
    personal, other, shared = (_namespace_group(v, utf8) for v in values)
    return Namespaces(personal, other, shared)


def _namespace_group(value: Value, utf8: bool) -> tuple[Namespace, ...]:
    if value is None:
        return ()
    group: list[Namespace] = []
    for entry in _items(value, "NAMESPACE"):
        fields = _items(entry, "NAMESPACE entry")
        if len(fields) < 2 or not isinstance(fields[0], bytes):
            raise ProtocolError("malformed NAMESPACE entry")
        prefix = decode_mailbox_name(fields[0], utf8=utf8) if fields[0] else ""
        group.append(Namespace(prefix, _delimiter(fields[1])))
    return tuple(group)


# ---------------------------------------------------------------------------------------
# SELECT / EXAMINE (RFC 3501 6.3.1, RFC 7162 3.1.2 and 3.2.5, RFC 8474 4.1)


@dataclass(frozen=True, slots=True)
class SelectState:
    """What SELECT or EXAMINE told about the mailbox just opened."""

    exists: int
    uidvalidity: int
    uidnext: int | None = None
    recent: int = 0
    first_unseen: int | None = None
    highestmodseq: int | None = None  # None also for [NOMODSEQ]
    flags: frozenset[str] = frozenset()
    permanent_flags: frozenset[str] | None = None  # None: not sent, all flags permanent
    read_only: bool = False
    mailbox_id: str | None = None
    vanished: UidSet = field(default_factory=UidSet)  # RFC 7162 VANISHED (EARLIER)
    fetches: tuple[FetchItem, ...] = ()


@dataclass(slots=True)
class _SelectFold:
    """Mutable twin of SelectState while the responses are folded in."""

    exists: int | None = None
    uidvalidity: int | None = None
    uidnext: int | None = None
    recent: int = 0
    first_unseen: int | None = None
    highestmodseq: int | None = None
    flags: frozenset[str] = frozenset()
    permanent_flags: frozenset[str] | None = None
    read_only: bool = False
    mailbox_id: str | None = None
    vanished: UidSet = field(default_factory=UidSet)
    fetches: list[FetchItem] = field(default_factory=list)


def fold_select(responses: Iterable[Untagged], completion: Tagged) -> SelectState:
    """Fold the untagged responses of a SELECT/EXAMINE and its tagged completion.

    A tagged NO/BAD raises :class:`CommandFailed`. RFC 7162 3.2.11: responses before
    ``[CLOSED]`` belong to the previously selected mailbox and are dropped.
    """
    if completion.status != "OK":
        code = None if completion.code is None else completion.code.name
        raise CommandFailed(completion.status, code, completion.text)
    fold = _SelectFold()
    for response in responses:
        if response.code is not None and response.code.name == "CLOSED":
            fold = _SelectFold()
        else:
            _fold_response(fold, response)
    if completion.code is not None:
        _fold_code(fold, completion.code)
    return _select_state(fold)


def _select_state(fold: _SelectFold) -> SelectState:
    # RFC 3501 6.3.1: EXISTS and [UIDVALIDITY] are REQUIRED; the gateway cannot work without.
    if fold.exists is None or fold.uidvalidity is None:
        raise ProtocolError("SELECT response lacks EXISTS or UIDVALIDITY")
    return SelectState(
        exists=fold.exists,
        uidvalidity=fold.uidvalidity,
        uidnext=fold.uidnext,
        recent=fold.recent,
        first_unseen=fold.first_unseen,
        highestmodseq=fold.highestmodseq,
        flags=fold.flags,
        permanent_flags=fold.permanent_flags,
        read_only=fold.read_only,
        mailbox_id=fold.mailbox_id,
        vanished=fold.vanished,
        fetches=tuple(fold.fetches),
    )


def _fold_response(fold: _SelectFold, response: Untagged) -> None:
    if response.keyword == "OK" and response.code is not None:
        _fold_code(fold, response.code)
    elif response.keyword == "EXISTS":
        fold.exists = _message_count(response)
    elif response.keyword == "RECENT":
        fold.recent = _message_count(response)
    elif response.keyword == "FLAGS":
        fold.flags = _flag_set(response.values, "FLAGS")
    elif response.keyword == "VANISHED":
        fold.vanished |= parse_vanished(response).uids
    elif response.keyword == "FETCH":
        fold.fetches.append(parse_fetch(response))


def _message_count(response: Untagged) -> int:
    if response.number is None or response.values:
        raise ProtocolError(f"malformed {response.keyword} response")
    return response.number


def _fold_code(fold: _SelectFold, code: ResponseCode) -> None:
    entry = _SELECT_CODES.get(code.name)
    if entry is not None:
        attribute, convert = entry
        setattr(fold, attribute, convert(code))


def _flag_set(args: list[Value], what: str) -> frozenset[str]:
    return frozenset(_atom_list(_single_value(args, what), what))


def _single_int(code: ResponseCode) -> int:
    return _int(_single_value(code.args, code.name), code.name)


_SELECT_CODES: dict[str, tuple[str, Callable[[ResponseCode], object]]] = {
    "UIDVALIDITY": ("uidvalidity", _single_int),
    "UIDNEXT": ("uidnext", _single_int),
    "UNSEEN": ("first_unseen", _single_int),
    "HIGHESTMODSEQ": ("highestmodseq", _single_int),
    "NOMODSEQ": ("highestmodseq", lambda code: None),  # RFC 7162 3.1.2.2
    "PERMANENTFLAGS": ("permanent_flags", lambda code: _flag_set(code.args, code.name)),
    "READ-ONLY": ("read_only", lambda code: True),
    "READ-WRITE": ("read_only", lambda code: False),
    "MAILBOXID": (
        "mailbox_id",
        lambda code: _object_id(_single_value(code.args, code.name), code.name),
    ),
}


def _single_value(values: list[Value], what: str) -> Value:
    if len(values) != 1:
        raise ProtocolError(f"expected exactly one value in {what}")
    return values[0]
