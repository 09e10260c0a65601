"""METADATA responses (RFC 5464 4.4): entry values, and the codes of a GETMETADATA's completion.

``* METADATA "" (/private/a {5}\\r\\nhello /private/b NIL)`` carries values; a value may come
as a literal (Dovecot always sends literals), a quoted string, or NIL for an entry that does
not exist. The unsolicited form lists only entry names. Dovecot answers names in lower case
whatever case was asked, and RFC 5464 3.2 makes entry names case-insensitive, so names are
given back lower-cased.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.imap.errors import ProtocolError
from gateway.imap.responses.tokens import ResponseCode, Untagged, Value
from gateway.imap.responses.values import as_text, expect_keyword, mailbox_raw


@dataclass(frozen=True)
class MetadataValues:
    """One METADATA response: the mailbox ("" for the server) and its entries' values (None:
    the entry does not exist); the unsolicited form has no values, only ``changed`` names."""

    mailbox: bytes
    values: dict[str, bytes | None]
    changed: tuple[str, ...] = ()


def parse_metadata(response: Untagged) -> MetadataValues:
    items = expect_keyword(response, "METADATA")
    if not items:
        raise ProtocolError("METADATA without a mailbox")
    mailbox = mailbox_raw(items[0])
    rest = items[1:]
    if len(rest) == 1 and isinstance(rest[0], list):
        return MetadataValues(mailbox, _pairs(rest[0]))
    # RFC 5464 4.4.2: unsolicited, the names of entries that changed.
    return MetadataValues(mailbox, {}, tuple(_name(item) for item in rest))


def _pairs(items: list[Value]) -> dict[str, bytes | None]:
    if len(items) % 2:
        raise ProtocolError("METADATA entry without a value")
    values: dict[str, bytes | None] = {}
    for name, value in zip(items[::2], items[1::2], strict=True):
        if value is not None and not isinstance(value, bytes):
            raise ProtocolError("METADATA value is neither a string nor NIL")
        values[_name(name)] = value
    return values


def _name(value: Value) -> str:
    return as_text(value, "METADATA entry").lower()


def long_entries(code: ResponseCode | None) -> int:
    """RFC 5464 4.2.1: ``[METADATA LONGENTRIES n]`` on GETMETADATA's OK, the size of the
    longest value left out by MAXSIZE; 0 when none was."""
    if code is None or code.name.upper() != "METADATA" or len(code.args) != 2:
        return 0
    kind, size = code.args
    if not isinstance(kind, str) or kind.upper() != "LONGENTRIES":
        return 0
    if not isinstance(size, str) or not size.isdigit():
        raise ProtocolError("METADATA LONGENTRIES without a number")
    return int(size)
