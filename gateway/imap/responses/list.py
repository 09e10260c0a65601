"""LIST and LSUB (RFC 3501 7.2.2), RFC 5258 extended data, RFC 6154 special-use."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.imap.errors import ProtocolError
from gateway.imap.responses.tokens import Untagged, Value
from gateway.imap.responses.values import (
    as_atom,
    as_delimiter,
    as_list,
    as_text,
    decode_mailbox_name,
    expect_keyword,
    mailbox_raw,
    named_pairs,
)

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
    values = expect_keyword(response, "LIST", "LSUB", "XLIST")
    if len(values) not in (3, 4):
        raise ProtocolError("LIST response has the wrong number of fields")
    attributes = frozenset(
        _CANONICAL_ATTRIBUTES.get(flag.upper(), flag)
        for flag in (as_atom(v, "LIST attribute") for v in as_list(values[0], "LIST attributes"))
    )
    raw = mailbox_raw(values[2])
    extended = dict(_list_extended(values[3])) if len(values) == 4 else {}
    return ListEntry(
        attributes, as_delimiter(values[1]), decode_mailbox_name(raw, utf8=utf8), raw, extended
    )


def _list_extended(value: Value) -> Iterable[tuple[str, Value]]:
    """RFC 5258 9: mbox-list-extended-item = tag SP tagged-ext-val, tag an astring."""
    return named_pairs(as_list(value, "LIST extended data"), "LIST extended data", as_text)
