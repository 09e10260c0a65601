"""Sets of UIDs (or message sequence numbers) and their compact IMAP form.

RFC 3501 9 ``sequence-set``: ``1:3,5,7:9``. A set is kept as sorted, disjoint ranges, so a
VANISHED or ESEARCH ALL answer covering millions of UIDs costs a few tuples, not a list of
ints; iteration expands lazily.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# RFC 3501 9: nz-number and uniqueid are unsigned 32-bit, never 0.
MAX_NUMBER = 4294967295
# Longest single piece "4294967295:4294967294"; a chunk limit below this cannot work.
_LONGEST_PIECE = 2 * len(str(MAX_NUMBER)) + 1

Range = tuple[int, int]


@dataclass(frozen=True, slots=True)
class UidSet:
    """An immutable set of positive 32-bit numbers held as inclusive ranges.

    Build it with :meth:`of`, :meth:`parse` or :meth:`from_ranges`; the constructor only
    accepts ranges that are already normalised, so equal sets always compare equal.
    """

    ranges: tuple[Range, ...] = ()

    def __post_init__(self) -> None:
        previous_end = -1
        for low, high in self.ranges:
            _check_number(low)
            _check_number(high)
            if low > high or low <= previous_end + 1:
                raise ValueError("UidSet ranges must be sorted, disjoint and not adjacent")
            previous_end = high

    @classmethod
    def of(cls, numbers: Iterable[int]) -> UidSet:
        """The set of the given numbers (any order, duplicates allowed)."""
        return cls.from_ranges((n, n) for n in numbers)

    @classmethod
    def from_ranges(cls, ranges: Iterable[Range]) -> UidSet:
        """Normalise arbitrary inclusive ranges (any order, overlapping, reversed)."""
        ordered = sorted((min(a, b), max(a, b)) for a, b in ranges)
        merged: list[Range] = []
        for low, high in ordered:
            if merged and low <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], high))
            else:
                merged.append((low, high))
        return cls(tuple(merged))

    @classmethod
    def parse(cls, text: str, *, star: int | None = None) -> UidSet:
        """Parse ``1:3,5,7:*``; ``*`` is rejected unless ``star`` says what it stands for."""
        return cls.from_ranges(parse_ranges(text, star=star))

    def __iter__(self) -> Iterator[int]:
        for low, high in self.ranges:
            yield from range(low, high + 1)

    def __len__(self) -> int:
        return sum(high - low + 1 for low, high in self.ranges)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __contains__(self, number: object) -> bool:
        if not isinstance(number, int):
            return False
        index = bisect.bisect_right(self.ranges, (number, MAX_NUMBER + 1)) - 1
        return index >= 0 and self.ranges[index][0] <= number <= self.ranges[index][1]

    def __or__(self, other: UidSet) -> UidSet:
        return UidSet.from_ranges(self.ranges + other.ranges)

    def __str__(self) -> str:
        return ",".join(_format_range(r) for r in self.ranges)

    def pages(self, size: int) -> Iterator[UidSet]:
        """Consecutive subsets of at most ``size`` members, in ascending order."""
        if size < 1:
            raise ValueError("page size must be positive")
        page: list[Range] = []
        room = size
        for low, high in self.ranges:
            while low <= high:
                take = min(room, high - low + 1)
                page.append((low, low + take - 1))
                low += take
                room -= take
                if room == 0:
                    yield UidSet(tuple(page))
                    page, room = [], size
        if page:
            yield UidSet(tuple(page))

    @property
    def min(self) -> int:
        """The smallest member; ValueError on an empty set."""
        if not self.ranges:
            raise ValueError("empty UidSet has no minimum")
        return self.ranges[0][0]

    @property
    def max(self) -> int:
        """The largest member; ValueError on an empty set."""
        if not self.ranges:
            raise ValueError("empty UidSet has no maximum")
        return self.ranges[-1][1]


def parse_ranges(text: str, *, star: int | None = None) -> list[Range]:
    """Split a sequence-set into ranges in the order written, without merging.

    The order matters for COPYUID (RFC 4315 3), where the n-th source UID maps to the n-th
    destination UID. Each range is returned low-high, since ``4:2`` means the same as ``2:4``
    (RFC 3501 9, seq-range).
    """
    if not text:
        raise ValueError("empty sequence set")
    return [_parse_piece(piece, star) for piece in text.split(",")]


def format_uid_set(numbers: Iterable[int] | UidSet) -> str:
    """Compact wire form, e.g. ``[1, 2, 3, 5]`` -> ``"1:3,5"``; an empty set is an error."""
    uid_set = numbers if isinstance(numbers, UidSet) else UidSet.of(numbers)
    if not uid_set:
        raise ValueError("an empty set has no IMAP sequence-set form")
    return str(uid_set)


def from_uid(low: int) -> str:
    """``low:*``: every UID from ``low`` on. RFC 3501 6.4.8: ``n:*`` also matches the last
    message when its UID is below n, so callers drop what is below ``low`` from the answer."""
    return f"{_check_number(low)}:*"


def split_uid_set(numbers: Iterable[int] | UidSet, max_octets: int = 8000) -> list[str]:
    """Compact forms of the set, each at most ``max_octets`` long, together covering it.

    RFC 7162 4 asks clients to keep command lines to about 8192 octets, so a large,
    fragmented set has to go out in several commands. An empty set gives no chunks.
    """
    if max_octets < _LONGEST_PIECE:
        raise ValueError(f"max_octets must be at least {_LONGEST_PIECE}")
    uid_set = numbers if isinstance(numbers, UidSet) else UidSet.of(numbers)
    chunks: list[str] = []
    current: list[str] = []
    length = 0
    for piece in map(_format_range, uid_set.ranges):
        added = len(piece) + (1 if current else 0)
        if current and length + added > max_octets:
            chunks.append(",".join(current))
            current, added = [], len(piece)
            length = 0
        current.append(piece)
        length += added
    if current:
        chunks.append(",".join(current))
    return chunks


def _parse_piece(piece: str, star: int | None) -> Range:
    low, sep, high = piece.partition(":")
    first = _parse_number(low, star)
    if not sep:
        return (first, first)
    second = _parse_number(high, star)
    return (min(first, second), max(first, second))


def _parse_number(text: str, star: int | None) -> int:
    if text == "*":
        if star is None:
            raise ValueError("'*' is not allowed in this sequence set")
        return _check_number(star)
    # RFC 3501 9: nz-number = digit-nz *DIGIT, so no sign, no space, no leading zero.
    if not (text.isascii() and text.isdigit()) or text.startswith("0"):
        raise ValueError(f"invalid number in sequence set: {text[:20]!r}")
    return _check_number(int(text))


def _check_number(number: int) -> int:
    if not 1 <= number <= MAX_NUMBER:
        raise ValueError(f"sequence number out of range: {number}")
    return number


def _format_range(item: Range) -> str:
    low, high = item
    return str(low) if low == high else f"{low}:{high}"
