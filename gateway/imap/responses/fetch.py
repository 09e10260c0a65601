"""FETCH (RFC 3501 7.4.2, RFC 7162 MODSEQ, RFC 8474 EMAILID/THREADID, RFC 8970 PREVIEW)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TypeVar

from gateway.imap.dates import MONTHS
from gateway.imap.errors import ProtocolError
from gateway.imap.fetch import BodySection
from gateway.imap.responses.tokens import Untagged, Value, parse_response
from gateway.imap.responses.values import (
    as_atom_list,
    as_int,
    as_list,
    as_object_id,
    as_parenthesized_int,
    as_text,
    expect_keyword,
    named_pairs,
    take,
)

_T = TypeVar("_T")

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
    # (uid, flags, INTERNALDATE in seconds, RFC822.SIZE) as the properties would give them,
    # already read from a response of the first sync's shape (_sync_fetch); not part of the
    # item's value, and None for any other item.
    known: tuple[int, list[str], int, int] | None = field(default=None, compare=False, repr=False)

    def get(self, name: str | BodySection) -> Value:
        """The generic value of an item (BODYSTRUCTURE, ENVELOPE, ...) or None if absent."""
        return self.items.get(fetch_key(str(name)))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str | BodySection) and fetch_key(str(name)) in self.items

    # The items every sync reads of every message convert without the generic helper's two
    # calls (a first sync reads them of tens of thousands).

    @property
    def uid(self) -> int | None:
        value = self.items.get("UID")
        return None if value is None else as_int(value, "UID")

    @property
    def flags(self) -> list[str] | None:
        value = self.items.get("FLAGS")
        return None if value is None else as_atom_list(value, "FLAGS")

    @property
    def modseq(self) -> int | None:
        """RFC 7162 3.1.4.1: ``MODSEQ (n)``."""
        return self._optional("MODSEQ", as_parenthesized_int)

    @property
    def size(self) -> int | None:
        value = self.items.get("RFC822.SIZE")
        return None if value is None else as_int(value, "RFC822.SIZE")

    @property
    def internaldate(self) -> datetime | None:
        value = self.items.get("INTERNALDATE")
        return None if value is None else _internaldate(value, "INTERNALDATE")

    @property
    def internaldate_seconds(self) -> int | None:
        """``int(internaldate.timestamp())``, the same value and errors, without a datetime
        per message (what the index keeps; a first sync reads tens of thousands)."""
        value = self.items.get("INTERNALDATE")
        return None if value is None else _internaldate_seconds(value, "INTERNALDATE")

    @property
    def email_id(self) -> str | None:
        return as_object_id(self.items.get("EMAILID"), "EMAILID")

    @property
    def thread_id(self) -> str | None:
        """RFC 8474 5.2: NIL when the server keeps no thread for this message."""
        return as_object_id(self.items.get("THREADID"), "THREADID")

    @property
    def x_guid(self) -> str | None:
        """Dovecot's message GUID, kept by COPY and MOVE."""
        return self._optional("X-GUID", as_text)

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
        return take(self.items, name, convert)


def parse_fetch(response: Untagged) -> FetchItem:
    """A FETCH response; the server may send any items, solicited or not."""
    values = expect_keyword(response, "FETCH")
    if response.number is None or response.number == 0 or len(values) != 1:
        raise ProtocolError("FETCH response needs a message number and one list")
    items = dict(named_pairs(as_list(values[0], "FETCH"), "FETCH"))
    return FetchItem(response.number, items)


def fetches_by_uid(responses: Iterable[Untagged]) -> dict[int, FetchItem]:
    """FETCH responses merged per UID, later items winning.

    A server may send several FETCH responses for one message during a command: the one
    asked for, and unsolicited flag updates made by other sessions (RFC 3501 7.4.2,
    RFC 7162 3.1.4 with CONDSTORE). Merged, the requested items are never lost to a later
    FLAGS-only response; responses without a UID (not about a message of a UID command) are
    left out.
    """
    return _merged(parse_fetch(r) for r in responses if r.keyword == "FETCH")


def fetches_from_raw(raws: Iterable[bytes]) -> dict[int, FetchItem]:
    """:func:`fetches_by_uid` of untagged responses as the connection received them
    (``Result.raw``), the same result for the same input.

    The first sync reads tens of thousands of FETCH responses; the common ones (items that
    are atoms, numbers, flat lists of atoms, plain quoted strings, NIL and literals) are read
    by :func:`_quick_fetch` straight into their items, without the generic token tree. Any
    other response goes through the generic parser, which raises on malformed ones as before.
    """
    return _merged(item for item in map(_any_fetch, raws) if item is not None)


def _any_fetch(raw: bytes) -> FetchItem | None:
    """One untagged response read quickly if it can be, else by the generic parser; None
    when it is not a FETCH."""
    item = _quick_fetch(raw)
    if item is not None:
        return item
    response = parse_response(raw)
    if not isinstance(response, Untagged):
        raise ProtocolError("untagged response expected")
    return parse_fetch(response) if response.keyword == "FETCH" else None


def _merged(items: Iterable[FetchItem]) -> dict[int, FetchItem]:
    """FETCH items by UID, several for one message merged in order (see fetches_by_uid)."""
    merged: dict[int, FetchItem] = {}
    for item in items:
        uid = item.uid if item.known is None else item.known[0]
        if uid is None:
            continue
        earlier = merged.get(uid)
        merged[uid] = (
            item if earlier is None else FetchItem(item.seq, {**earlier.items, **item.items})
        )
    return merged


# "* n FETCH (" with a non-zero number (zero is the generic parser's error to raise).
_QUICK_HEAD = re.compile(rb"\* ([1-9][0-9]{0,19}) (?i:FETCH) \(")
# RFC 3501 9 ATOM-CHAR without "[" and "]" (atoms holding them take the generic path).
_ATOM = rb'[^\x00-\x20\x7f-\xff(){"\\\[\]]+'
# One "name SP value" of a FETCH list: the name is a plain item name or a section (with
# the generic tokenizer's _SECTION characters, quotes left to it), the value an atom, a
# quoted string without escapes, a flat list of atoms (flags start with a backslash), or a
# literal's announcement. Anything else does not match, and the generic parser takes over.
_QUICK_SECTION = (
    rb"(?i:BODY(?:\.PEEK)?|BINARY(?:\.PEEK|\.SIZE)?)"
    rb'\[[^\]"{\x00-\x1f\x7f-\xff]*\](?:<[0-9]{1,20}>)?'
)
_QUICK_PAIR = re.compile(
    rb"([A-Za-z0-9][A-Za-z0-9.-]*|" + _QUICK_SECTION + rb") "
    rb"(?:("
    + _ATOM
    + rb')|"([^"\\\r\n\x00]*)"|\(((?:\\?'
    + _ATOM
    + rb"(?: \\?"
    + _ATOM
    + rb")*)?)\)|\{([0-9]{1,20})\}\r\n)"
)
_NIL = b"NIL"
# The answer to the first sync's own UID FETCH as Dovecot words it, whole: UID, FLAGS,
# INTERNALDATE, RFC822.SIZE, X-GUID (absent with digest ids), the thread fields' section
# (partial with X-GUID ids) as a literal; X-GUID may come last instead. Read by two matches
# instead of one per item.
_SYNC_SHAPE = re.compile(
    rb"\* ([1-9][0-9]{0,19}) FETCH \(UID ([0-9]{1,20}) FLAGS \(((?:\\?"
    + _ATOM
    + rb"(?: \\?"
    + _ATOM
    + rb')*)?)\) INTERNALDATE "([^"\\\r\n\x00]*)" RFC822\.SIZE ([0-9]{1,20}) '
    rb"(?:X-GUID ("
    + _ATOM
    + rb") )?(BODY\[HEADER\.FIELDS \([A-Z0-9 -]*\)\](?:<0>)?) \{([0-9]{1,20})\}\r\n"
)
_SYNC_TAIL = re.compile(rb"(?: X-GUID (" + _ATOM + rb"))?\)")


def _sync_fetch(raw: bytes) -> FetchItem | None:
    """A response of :data:`_SYNC_SHAPE`, with the items :func:`_quick_fetch` would give
    it; None for any other."""
    shape = _SYNC_SHAPE.match(raw)
    if shape is None:
        return None
    number, uid, flags, date, size, first_guid, section, length = shape.groups()
    start = shape.end()
    stop = start + int(length)
    tail = _SYNC_TAIL.fullmatch(raw, stop) if stop < len(raw) else None
    if tail is None:
        return None
    items: dict[str, Value] = {
        "UID": uid.decode("ascii"),
        "FLAGS": [
            None if len(a) == 3 and a.upper() == _NIL else a.decode("ascii") for a in flags.split()
        ],
        "INTERNALDATE": date,
        "RFC822.SIZE": size.decode("ascii"),
        section.decode("ascii"): raw[start:stop],
    }
    for guid in (first_guid, tail.group(1)):
        if guid is not None:
            items["X-GUID"] = (
                None if len(guid) == 3 and guid.upper() == _NIL else guid.decode("ascii")
            )
    return FetchItem(int(number), items, _known(uid, items["FLAGS"], date, size))


def _known(
    uid: bytes, flags: Value, date: bytes, size: bytes
) -> tuple[int, list[str], int, int] | None:
    """FetchItem.known of a response of the first sync's shape; None where a property would
    raise (a NIL flag, a malformed date), so that the property raises it later as before."""
    if not isinstance(flags, list) or None in flags:
        return None
    try:
        seconds = _internaldate_seconds(date, "INTERNALDATE")
    except ProtocolError:
        return None
    return int(uid), [f for f in flags if isinstance(f, str)], seconds, int(size)


def _quick_fetch(raw: bytes) -> FetchItem | None:
    """A FETCH response of the common shape, exactly as the generic parser reads it; None
    for anything else (another response, an odd value, a malformed one)."""
    item = _sync_fetch(raw)
    if item is not None:
        return item
    head = _QUICK_HEAD.match(raw)
    if head is None:
        return None
    items: dict[str, Value] = {}
    pos = head.end()
    end = len(raw) - 1
    if end <= pos or raw[end] != 0x29:  # ")" closes the list, and nothing follows it
        return None
    match = _QUICK_PAIR.match
    while True:
        pair = match(raw, pos, end)
        if pair is None:
            return None
        name, atom, quoted, flat, literal = pair.groups()
        if b"(" in name and name.count(b"(") != name.count(b")"):
            return None
        value: Value
        pos = pair.end()
        if atom is not None:
            value = None if len(atom) == 3 and atom.upper() == _NIL else atom.decode("ascii")
        elif quoted is not None:
            value = quoted
        elif flat is not None:
            value = [
                None if len(a) == 3 and a.upper() == _NIL else a.decode("ascii")
                for a in flat.split()
            ]
        else:
            start = pos
            pos += int(literal)
            if pos > end:
                return None
            value = raw[start:pos]
        if len(name) == 3 and name.upper() == _NIL:
            return None
        items[name.decode("ascii").upper()] = value
        if pos == end:
            return FetchItem(int(head.group(1)), items)
        if raw[pos] != 0x20:
            return None
        pos += 1


@functools.lru_cache(maxsize=64)
def _zone(sign: bytes, hours: bytes, minutes: bytes) -> timezone:
    """A zone of INTERNALDATE, made once: a mailbox has few of them."""
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(-offset if sign == b"-" else offset)


@functools.lru_cache(maxsize=64)
def _zone_seconds(sign: bytes, hours: bytes, minutes: bytes) -> int:
    """A zone's offset east of UTC in seconds; ValueError for one :func:`_zone` refuses."""
    offset = _zone(sign, hours, minutes).utcoffset(None)
    return 0 if offset is None else offset.days * 86400 + offset.seconds


@functools.lru_cache(maxsize=4096)
def _epoch_days(year: bytes, month: int, day: bytes) -> int:
    """Days from 1970-01-01 to a date (a mailbox's messages share few); ValueError for an
    impossible one, as datetime raises it."""
    return date(int(year), month, int(day)).toordinal() - _EPOCH_ORDINAL


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _internaldate_seconds(value: Value, what: str) -> int:
    """:func:`_internaldate` as whole seconds since the epoch, by arithmetic."""
    match = _INTERNALDATE.fullmatch(value) if isinstance(value, bytes) else None
    month = _MONTH_NUMBERS.get(match.group(2).upper()) if match else None
    if match is None or month is None:
        raise ProtocolError(f"malformed {what}")
    day, _, year, hour, minute, second, sign, zone_hours, zone_minutes = match.groups()
    hours, minutes, seconds = int(hour), int(minute), int(second)
    try:
        if hours > 23 or minutes > 59 or seconds > 59:
            raise ValueError(what)
        days = _epoch_days(year, month, day)
        offset = _zone_seconds(sign, zone_hours, zone_minutes)
    except ValueError:
        raise ProtocolError(f"impossible date in {what}") from None
    return days * 86400 + hours * 3600 + minutes * 60 + seconds - offset


def _internaldate(value: Value, what: str) -> datetime:
    """RFC 3501 9 date-time: ``"17-Jul-1996 02:44:25 -0700"`` -> aware datetime."""
    match = _INTERNALDATE.fullmatch(value) if isinstance(value, bytes) else None
    month = _MONTH_NUMBERS.get(match.group(2).upper()) if match else None
    if match is None or month is None:
        raise ProtocolError(f"malformed {what}")
    day, year, hour, minute, second = (int(match.group(i)) for i in (1, 3, 4, 5, 6))
    try:
        # A zone of 24 hours or more is as impossible as 31 February.
        zone = _zone(match.group(7), match.group(8), match.group(9))
        return datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:
        raise ProtocolError(f"impossible date in {what}") from None
