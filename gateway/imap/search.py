"""UID SEARCH with typed criteria (RFC 3501 6.4.4, RFC 4731 ESEARCH).

A criterion is a small tree: :class:`Text` and :class:`Header` (string keys), :class:`Uid`,
:class:`Larger`, :class:`Smaller`, :data:`ALL`, and :class:`And`, :class:`Or`, :class:`Not`
over others. :func:`arguments` writes it in SEARCH syntax: keys side by side for AND (what
SEARCH does with a list of keys), ``OR a b`` nested for more than two alternatives, a
parenthesized list where OR or NOT needs several keys as one, strings as atoms, quoted
strings or literals (:func:`gateway.imap.commands.astring`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from gateway.imap.commands import Arg, Command, Group, Uids, astring, sequence_set


class TextKey(enum.StrEnum):
    """SEARCH keys that take one string and match text of the message."""

    TEXT = "TEXT"
    BODY = "BODY"
    FROM = "FROM"
    TO = "TO"
    CC = "CC"
    BCC = "BCC"
    SUBJECT = "SUBJECT"


@dataclass(frozen=True, slots=True)
class Text:
    """``FROM "bob"``: messages whose field (or text, or body) holds ``value``."""

    key: TextKey
    value: str


@dataclass(frozen=True, slots=True)
class Header:
    """``HEADER name value``: messages with a field ``name`` holding ``value`` ("" for any)."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Uid:
    """``UID set``: messages among these UIDs (a set, or a chunk such as ``from_uid(n)``)."""

    uids: Uids


@dataclass(frozen=True, slots=True)
class Larger:
    """``LARGER n``: RFC822.SIZE above ``octets``."""

    octets: int


@dataclass(frozen=True, slots=True)
class Smaller:
    """``SMALLER n``: RFC822.SIZE below ``octets``."""

    octets: int


class _All(enum.Enum):
    ALL = "ALL"


ALL = _All.ALL


@dataclass(frozen=True, slots=True)
class And:
    """Messages matching every one of ``keys``; none: every message."""

    keys: tuple[Criterion, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Messages matching any of ``keys``; none: no message."""

    keys: tuple[Criterion, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """Messages not matching ``key``."""

    key: Criterion


Criterion: TypeAlias = "Text | Header | Uid | Larger | Smaller | _All | And | Or | Not"


def arguments(criteria: Sequence[Criterion]) -> list[Arg]:
    """The SEARCH arguments matching what all of ``criteria`` match."""
    return _tokens(And(tuple(criteria)))


def uid_search(
    criteria: Sequence[Criterion], *, charset: str | None = None, esearch: bool = False
) -> Command:
    """``UID SEARCH [RETURN (ALL)] [CHARSET c] criteria``; ``esearch`` asks the compact
    answer of RFC 4731 (where the server has ESEARCH)."""
    prefix = ("RETURN", "(ALL)") if esearch else ()
    declared = ("CHARSET", astring(charset)) if charset is not None else ()
    return Command("UID", "SEARCH", *prefix, *declared, *arguments(criteria))


def _flat(criterion: Criterion) -> list[Criterion]:
    """The keys whose conjunction ``criterion`` is (SEARCH ANDs keys side by side)."""
    if isinstance(criterion, And):
        return [key for child in criterion.keys for key in _flat(child)] or [ALL]
    return [criterion]


def _tokens(criterion: Criterion) -> list[Arg]:
    if isinstance(criterion, And):
        return [token for key in _flat(criterion) for token in _tokens(key)]
    if isinstance(criterion, Or):
        return _any_of([_one(key) for key in criterion.keys])
    if isinstance(criterion, Not):
        return ["NOT", *_one(criterion.key)]
    return _key(criterion)


def _key(criterion: Text | Header | Uid | Larger | Smaller | _All) -> list[Arg]:
    if isinstance(criterion, Text):
        return [str(criterion.key), astring(criterion.value)]
    if isinstance(criterion, Header):
        return ["HEADER", astring(criterion.name), astring(criterion.value)]
    if isinstance(criterion, Uid):
        return ["UID", sequence_set(criterion.uids)]
    if isinstance(criterion, Larger):
        return ["LARGER", str(int(criterion.octets))]
    if isinstance(criterion, Smaller):
        return ["SMALLER", str(int(criterion.octets))]
    return ["ALL"]


def _any_of(keys: list[list[Arg]]) -> list[Arg]:
    """``OR a OR b c``: one key matching what any of ``keys`` matches (none: nothing)."""
    if not keys:
        return ["NOT", "ALL"]
    # OR k1 OR k2 ... OR kn-1 kn, built front to back: linear in the keys, however many.
    either: list[Arg] = []
    for key in keys[:-1]:
        either += ["OR", *key]
    return either + keys[-1]


def _one(criterion: Criterion) -> list[Arg]:
    """A criterion as the single key OR and NOT take: a parenthesized list if several."""
    keys = _flat(criterion)
    if len(keys) == 1:
        return _tokens(keys[0])
    return [Group(*(token for key in keys for token in _tokens(key)))]
