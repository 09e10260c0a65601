"""Pure parsers for IMAP server responses (RFC 3501 / RFC 9051 section 9 and extensions).

Two layers. :func:`parse_response` turns one complete response, as cut by
:class:`gateway.imap.framing.ResponseFramer`, into a :class:`Tagged`, :class:`Untagged` or
:class:`Continuation` whose data is a tree of generic values:

* atoms and numbers -> ``str`` (left as text; the typed parsers convert and validate),
* quoted strings, literals and literal8 -> ``bytes`` (quoted strings unescaped),
* ``NIL`` -> ``None``, parenthesized lists -> ``list``.

The parser is positional, so a quoted string or literal holding ``* ``, ``)`` or CRLF is
never mistaken for protocol syntax. The typed parsers beside this module (LIST, STATUS,
FETCH, ESEARCH, ...) check the shape they expect. Anything malformed raises
:class:`ProtocolError`, never IndexError or ValueError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from gateway.imap.errors import ProtocolError

Value: TypeAlias = "str | bytes | list[Value] | None"
Status = Literal["OK", "NO", "BAD"]

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
