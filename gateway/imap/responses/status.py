"""STATUS (RFC 3501 7.2.4, RFC 7162 HIGHESTMODSEQ, RFC 8438 SIZE, RFC 8474 MAILBOXID)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.imap.errors import ProtocolError
from gateway.imap.responses.tokens import Untagged, Value
from gateway.imap.responses.values import (
    as_int,
    as_list,
    as_single_atom,
    as_text,
    decode_mailbox_name,
    expect_keyword,
    mailbox_raw,
    named_pairs,
)

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
    values = expect_keyword(response, "STATUS")
    if len(values) != 2:
        raise ProtocolError("STATUS response has the wrong number of fields")
    raw = mailbox_raw(values[0])
    numbers: dict[str, int] = {}
    texts: dict[str, str] = {}
    for name, value in named_pairs(as_list(values[1], "STATUS items"), "STATUS items"):
        if value is None:
            continue  # e.g. RFC 7889 "APPENDLIMIT NIL": no number to report
        if name in _TEXT_STATUS_ITEMS or not isinstance(value, str):
            texts[name] = _status_text(value, name)
        else:
            numbers[name] = as_int(value, name)
    return StatusEntry(decode_mailbox_name(raw, utf8=utf8), raw, numbers, texts)


def _status_text(value: Value, name: str) -> str:
    """RFC 8474 ``MAILBOXID (id)``, or a plain atom/string such as Dovecot's X-GUID."""
    if isinstance(value, list):
        return as_single_atom(value, name)
    return as_text(value, name)
