"""Building IMAP commands, with no I/O (RFC 3501 / RFC 9051 section 9, client side).

A :class:`Command` is a verb and arguments. Arguments are:

* ``str``: protocol text sent as is (``"UID"``, ``"(FLAGS UID)"``, ``"1:5"``); it must be
  printable ASCII, so an argument can never smuggle a CRLF and start a second command.
  The builders below (:func:`astring`, :func:`mailbox`, :func:`flag_list`, ...) return
  such text, already quoted where needed;
* :class:`LiteralArg` from :func:`literal` or :func:`astring`, for data that cannot be
  quoted (8-bit, CR/LF, large);
* :class:`Group`, a parenthesized list whose members may include literals;
* :class:`Secret`, which wraps any of these so logs show ``***`` (LOGIN password).

:meth:`Command.to_wire` gives the octets to send as a list of ``bytes`` and :class:`Literal`
chunks. The transport writes them in order; before writing a :class:`Literal` whose
``synchronizing`` is true it waits for the server's ``+`` (RFC 3501 7.5), or gives up on
a tagged NO/BAD. Tagging is the transport's job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TypeAlias

from gateway.imap import mutf7
from gateway.imap.dates import MONTHS
from gateway.imap.sequence import UidSet, format_uid_set
from gateway.sasl import plain_initial_response

# A sequence-set argument: one UID, a set of them, or a chunk that sequence.split_uid_set or
# sequence.from_uid made (checked, so no other text passes as one).
Uids: TypeAlias = "str | int | UidSet | Iterable[int]"

# RFC 7888 4: with LITERAL- only literals up to 4096 octets may be non-synchronizing.
LITERAL_MINUS_MAX = 4096

# RFC 3501 9: ASTRING-CHAR = ATOM-CHAR / resp-specials; atom-specials are excluded.
_ASTRING_ATOM = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\]+")
# RFC 3501 9: flag = "\" atom / atom (keyword); ATOM-CHAR excludes "]".
_FLAG = re.compile(r"\\?[^\x00-\x20\x7f-\U0010ffff(){%*\"\\\]]+")
# Quoted strings are kept to printable ASCII: control octets are legal in theory but
# servers differ, and 8-bit text is only allowed after UTF8=ACCEPT; literals always work.
_QUOTABLE = re.compile(rb"[\x20-\x7e]*")
_PROTOCOL_TEXT = re.compile(r"[\x20-\x7e]+")
_VERB = re.compile(r"[A-Za-z][A-Za-z0-9.-]*(?: [A-Za-z][A-Za-z0-9.-]*)*")
_QUOTED_TEXT = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
# RFC 2971 3.3: lengths of ID field names and values.
ID_FIELD_MAX = 30
ID_VALUE_MAX = 1024
# RFC 3501 9: tag = 1*<any ASTRING-CHAR except "+">.
_TAG = re.compile(r"[^\x00-\x20\x7f-\U0010ffff(){%*\"\\+]+")
# RFC 3501 9: sequence-set, of numbers or "*".
_SEQ_NUMBER = r"(?:[1-9][0-9]*|\*)"
_SEQ_RANGE = rf"{_SEQ_NUMBER}(?::{_SEQ_NUMBER})?"
_SEQUENCE_SET = re.compile(rf"{_SEQ_RANGE}(?:,{_SEQ_RANGE})*")


@dataclass(frozen=True, slots=True)
class LiteralArg:
    """Argument data to send as a literal; ``binary`` makes it a literal8 (RFC 3516 4.3)."""

    data: bytes
    binary: bool = False

    def __repr__(self) -> str:
        return f"LiteralArg(<{len(self.data)} octets>, binary={self.binary})"


class Group:
    """A parenthesized list of arguments, e.g. ``(HEADER Subject {5}...)`` in SEARCH."""

    __slots__ = ("items",)

    def __init__(self, *items: Arg) -> None:
        self.items = items

    def __repr__(self) -> str:
        return f"Group({_render_log(self)})"


class Secret:
    """An argument sent normally but rendered as ``***`` in logs and reprs."""

    __slots__ = ("value",)

    def __init__(self, value: Arg) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Secret(***)"


Arg: TypeAlias = "str | LiteralArg | Group | Secret"


@dataclass(frozen=True, slots=True)
class Literal:
    """Literal data in :meth:`Command.to_wire` output.

    The chunk before it ends with the announcement (``{N}``, ``{N+}``, ``~{N}`` and CRLF).
    If ``synchronizing``, wait for a continuation request before writing ``data``.
    """

    data: bytes
    synchronizing: bool

    def __repr__(self) -> str:
        return f"Literal(<{len(self.data)} octets>, synchronizing={self.synchronizing})"


class Command:
    """One IMAP command without its tag; see the module docstring for the argument kinds."""

    __slots__ = ("args", "name")

    def __init__(self, name: str, *args: Arg) -> None:
        if not _VERB.fullmatch(name):
            raise ValueError(f"invalid IMAP command name: {name!r}")
        for arg in args:
            _check_arg(arg)
        self.name = name.upper()
        self.args = args

    def to_wire(
        self, tag: str, *, literal_plus: bool = False, literal_minus: bool = False
    ) -> list[bytes | Literal]:
        """The command's octets, tagged, ending in CRLF.

        ``literal_plus`` / ``literal_minus`` say whether the server advertised LITERAL+ or
        LITERAL- (RFC 7888), which decides which literals may skip the ``+`` round trip.
        """
        if not _TAG.fullmatch(tag):
            raise ValueError(f"invalid IMAP tag: {tag!r}")
        chunks: list[bytes | Literal] = []
        text = [tag, " ", self.name]
        for piece in _pieces(self.args):
            if isinstance(piece, str):
                text.append(piece)
                continue
            synchronizing = _must_synchronize(len(piece.data), literal_plus, literal_minus)
            text.append(_announcement(piece, synchronizing))
            chunks.append("".join(text).encode("ascii"))
            chunks.append(Literal(piece.data, synchronizing))
            text = []
        text.append("\r\n")
        chunks.append("".join(text).encode("ascii"))
        return chunks

    def redacted(self, tag: str | None = None) -> str:
        """The command for logs: secrets as ``***``, literals as ``{N}`` without content."""
        parts = [self.name, *(_render_log(arg) for arg in self.args)]
        return " ".join([tag, *parts] if tag else parts)

    def __repr__(self) -> str:
        return f"Command({self.redacted()!r})"


def astring(value: str | bytes) -> str | LiteralArg:
    """The cheapest correct form of an astring: atom, quoted string, or literal.

    ``NIL`` is quoted, so no server can read it as the nil token. Text is sent as UTF-8,
    which non-ASCII always puts in a literal.
    """
    data = value.encode("utf-8") if isinstance(value, str) else value
    if _ASTRING_ATOM.fullmatch(data) and data.upper() != b"NIL":
        return data.decode("ascii")
    if _QUOTABLE.fullmatch(data):
        escaped = data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        return '"' + escaped.decode("ascii") + '"'
    return LiteralArg(data)


def literal(data: bytes, *, binary: bool = False) -> LiteralArg:
    """Force a literal (APPEND message data); ``binary`` for literal8 with BINARY."""
    return LiteralArg(data, binary)


def mailbox(name: str, *, utf8: bool = False) -> str | LiteralArg:
    """A mailbox name argument: modified UTF-7 (RFC 3501 5.1.3) unless UTF8=ACCEPT.

    RFC 3501 5.1: INBOX is case-insensitive, so any spelling is sent as ``INBOX``. To
    address a mailbox exactly as LIST returned it, pass its raw name to :func:`astring`.
    """
    if name.upper() == "INBOX":
        return "INBOX"
    return astring(name if utf8 else mutf7.encode(name))


def flag_list(flags: Iterable[str]) -> str:
    """``(\\Seen $Forwarded)`` for STORE and APPEND; rejects anything not a flag."""
    flags = list(flags)
    for flag in flags:
        if not _FLAG.fullmatch(flag):
            raise ValueError(f"not a valid IMAP flag or keyword: {flag!r}")
    return "(" + " ".join(flags) + ")"


def uid_set(numbers: UidSet | Iterable[int]) -> str:
    """A compact sequence-set; split large sets first with ``sequence.split_uid_set``."""
    return format_uid_set(numbers)


def sequence_set(uids: Uids) -> str:
    """The sequence-set argument for ``uids`` (see :data:`Uids`)."""
    if isinstance(uids, str):
        if not _SEQUENCE_SET.fullmatch(uids):
            raise ValueError(f"not an IMAP sequence-set: {uids[:40]!r}")
        return uids
    if isinstance(uids, int):
        return format_uid_set((uids,))
    return format_uid_set(uids)


def search_date(day: date) -> str:
    """RFC 3501 9 date for SEARCH (SINCE, BEFORE, ON): ``1-Feb-1994``; no time, no zone."""
    return f"{day.day}-{MONTHS[day.month - 1]}-{day.year:04d}"


def date_time(moment: datetime) -> str:
    """RFC 3501 9 date-time for APPEND: ``"17-Jul-1996 02:44:25 -0700"``.

    The zone has minute precision; an offset with seconds is converted to UTC first.
    """
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("APPEND date-time needs an aware datetime")
    if offset % timedelta(minutes=1):
        moment, offset = moment.astimezone(UTC), timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    hours, minutes = divmod(abs(offset) // timedelta(minutes=1), 60)
    return (
        f'"{moment.day:02d}-{MONTHS[moment.month - 1]}-{moment.year:04d} '
        f'{moment:%H:%M:%S} {sign}{hours:02d}{minutes:02d}"'
    )


def login_command(user: str, password: str) -> Command:
    """``LOGIN user password`` (RFC 3501 6.2.3), the password hidden from logs."""
    return Command("LOGIN", astring(user), Secret(astring(password)))


def authenticate_plain_command(user: str, password: str, authzid: str = "") -> Command:
    """``AUTHENTICATE PLAIN <initial response>`` for servers with SASL-IR (RFC 4959);
    ``authzid``: ``user`` acts for that user (RFC 4616)."""
    initial = plain_initial_response(user, password, authzid)
    return Command("AUTHENTICATE", "PLAIN", Secret(initial))


def id_command(fields: Mapping[str, str]) -> Command:
    """``ID ("field" "value" ...)`` (RFC 2971 3.1); an empty mapping sends ``ID NIL``.

    RFC 2971 3.3: field strings are at most 30 octets, values at most 1024, and both must be
    strings, not atoms, so each is quoted (and must be quotable ASCII).
    """
    if not fields:
        return Command("ID", "NIL")
    items: list[str] = []
    for name, value in fields.items():
        if len(name) > ID_FIELD_MAX or len(value) > ID_VALUE_MAX:
            raise ValueError("ID field or value too long (RFC 2971 3.3)")
        items += [_quoted(name), _quoted(value)]
    return Command("ID", "(" + " ".join(items) + ")")


def authenticate_command(mechanism: str, initial_response: str) -> Command:
    """``AUTHENTICATE <mechanism> <initial response>`` for servers with SASL-IR (RFC 4959)."""
    return Command("AUTHENTICATE", mechanism, Secret(initial_response))


def _quoted(value: str) -> str:
    if not _QUOTED_TEXT.fullmatch(value):
        raise ValueError("ID text must be printable ASCII without quotes or backslashes")
    return f'"{value}"'


def _check_arg(arg: Arg) -> None:
    if isinstance(arg, str):
        if not _PROTOCOL_TEXT.fullmatch(arg):
            raise ValueError("protocol text must be non-empty printable ASCII")
    elif isinstance(arg, Group):
        for item in arg.items:
            _check_arg(item)
    elif isinstance(arg, Secret):
        _check_arg(arg.value)


def _pieces(args: Iterable[Arg]) -> Iterable[str | LiteralArg]:
    """Flatten arguments to text and literals, with a space before each argument."""
    for arg in args:
        yield " "
        yield from _arg_pieces(arg)


def _arg_pieces(arg: Arg) -> Iterable[str | LiteralArg]:
    if isinstance(arg, Secret):
        yield from _arg_pieces(arg.value)
    elif isinstance(arg, Group):
        yield "("
        for index, item in enumerate(arg.items):
            if index:
                yield " "
            yield from _arg_pieces(item)
        yield ")"
    else:
        yield arg


def _must_synchronize(size: int, literal_plus: bool, literal_minus: bool) -> bool:
    if literal_plus:
        return False
    return not (literal_minus and size <= LITERAL_MINUS_MAX)


def _announcement(piece: LiteralArg, synchronizing: bool) -> str:
    """``{N}`` / ``{N+}`` (RFC 7888), or ``~{N}`` / ``~{N+}`` for literal8 (RFC 4466 2.1)."""
    prefix = "~" if piece.binary else ""
    return f"{prefix}{{{len(piece.data)}{'' if synchronizing else '+'}}}\r\n"


def _render_log(arg: Arg) -> str:
    if isinstance(arg, Secret):
        return "***"
    if isinstance(arg, Group):
        return "(" + " ".join(_render_log(item) for item in arg.items) + ")"
    if isinstance(arg, LiteralArg):
        return f"{'~' if arg.binary else ''}{{{len(arg.data)}}}"
    return arg
