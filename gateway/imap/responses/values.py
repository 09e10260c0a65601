"""Checks and conversions the typed parsers share: numbers, atoms, lists, strings, name-value
pairs, sequence sets, object ids, mailbox names. Each raises :class:`ProtocolError` on a value
of the wrong shape, never IndexError or ValueError."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from gateway.imap import mutf7
from gateway.imap.errors import ProtocolError
from gateway.imap.responses.tokens import Untagged, Value
from gateway.imap.sequence import UidSet

_T = TypeVar("_T")


def as_int(value: Value, what: str) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        return int(value)
    raise ProtocolError(f"expected a number for {what}")


def as_atom(value: Value, what: str) -> str:
    if isinstance(value, str):
        return value
    raise ProtocolError(f"expected an atom for {what}")


def as_atom_list(value: Value, what: str) -> list[str]:
    """A parenthesized list of atoms, such as a flag list."""
    return [as_atom(item, what) for item in as_list(value, what)]


def as_list(value: Value, what: str) -> list[Value]:
    if isinstance(value, list):
        return value
    raise ProtocolError(f"expected a parenthesized list for {what}")


def as_text(value: Value, what: str) -> str:
    """An atom or a string, as text; strings must be UTF-8 (ASCII in practice)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"{what} is not UTF-8") from None
    raise ProtocolError(f"expected a string for {what}")


def named_pairs(
    values: Sequence[Value], what: str, name: Callable[[Value, str], str] = as_atom
) -> Iterable[tuple[str, Value]]:
    """``NAME value NAME value ...`` with names upper-cased."""
    if len(values) % 2:
        raise ProtocolError(f"odd number of tokens in {what}")
    for index in range(0, len(values), 2):
        yield name(values[index], what).upper(), values[index + 1]


def expect_keyword(response: Untagged, *keywords: str) -> list[Value]:
    if response.keyword not in keywords:
        raise ProtocolError(f"expected a {'/'.join(keywords)} response, got {response.keyword}")
    return response.values


def as_uid_set(value: Value, what: str) -> UidSet:
    try:
        return UidSet.parse(as_atom(value, what))
    except ValueError:
        raise ProtocolError(f"invalid sequence set in {what}") from None


def as_object_id(value: Value, what: str) -> str | None:
    """RFC 8474 5: ``(id)`` or NIL."""
    return None if value is None else as_single_atom(as_list(value, what), what)


def take(data: dict[str, Value], name: str, convert: Callable[[Value, str], _T]) -> _T | None:
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


def as_delimiter(value: Value) -> str | None:
    """RFC 3501 9: DQUOTE QUOTED-CHAR DQUOTE / nil; NIL means a flat namespace."""
    if value is None:
        return None
    if isinstance(value, bytes) and len(value) == 1 and value.isascii():
        return value.decode("ascii")
    raise ProtocolError("LIST hierarchy delimiter is not one character")


def as_single_atom(items: list[Value], what: str) -> str:
    return as_atom(single_value(items, what), what)


def as_parenthesized_int(value: Value, what: str) -> int:
    return as_int(as_single_atom(as_list(value, what), what), what)


def as_nz_number(value: Value, what: str) -> int:
    number = as_int(value, what)
    if number == 0:
        raise ProtocolError(f"zero is not a valid number in {what}")
    return number


def single_value(values: list[Value], what: str) -> Value:
    if len(values) != 1:
        raise ProtocolError(f"expected exactly one value in {what}")
    return values[0]
