"""UID FETCH with typed items (RFC 3501 6.4.5 and 6.4.8, RFC 9051 6.4.5).

An item is an :class:`Attr` (a data item named by one atom: FLAGS, RFC822.SIZE, X-GUID, ...)
or a :class:`BodySection` (``BODY.PEEK[section]<partial>``). Both render as the exact item
text the command carries and key the answer too: ``FetchItem.section(BodySection(...))``
finds ``BODY[...]<0>`` for ``BODY.PEEK[...]<0.100>``. Items are hashable, so callers can
group emails by the set of items they lack, and sortable by their text.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeAlias

from gateway.imap.commands import Command, Uids, astring, sequence_set

# RFC 3501 9: section-part = nz-number *("." nz-number), then at most one section-text.
_SECTION = re.compile(r"(?:[1-9][0-9]*(?:\.[1-9][0-9]*)*(?:\.(?:HEADER|TEXT|MIME))?|HEADER|TEXT)?")
# RFC 5322 3.6.8: field-name = 1*ftext, printable ASCII but ":".
_FIELD_NAME = re.compile(r"[!-9;-~]+")


class Attr(enum.StrEnum):
    """Fetch items that are one atom: the ones the gateway asks for."""

    UID = "UID"
    FLAGS = "FLAGS"
    INTERNALDATE = "INTERNALDATE"
    SIZE = "RFC822.SIZE"
    BODYSTRUCTURE = "BODYSTRUCTURE"
    PREVIEW = "PREVIEW"  # RFC 8970
    EMAILID = "EMAILID"  # RFC 8474 5.1
    THREADID = "THREADID"  # RFC 8474 5.2
    X_GUID = "X-GUID"  # Dovecot's message GUID


@dataclass(frozen=True, slots=True)
class BodySection:
    """``BODY[.PEEK][section]<start.length>`` (RFC 3501 6.4.5).

    ``section`` is a part number with an optional text specifier (``"1.2"``, ``"1.MIME"``,
    ``"HEADER"``), ``""`` for the whole message; ``fields`` asks ``HEADER.FIELDS (...)`` of
    that part instead. ``peek`` leaves \\Seen alone; ``partial`` is (first octet, count).
    """

    section: str = ""
    fields: tuple[str, ...] = ()
    partial: tuple[int, int] | None = None
    peek: bool = True
    # The item's text, made once: it is written into commands and looked up in answers.
    text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _SECTION.fullmatch(self.section):
            raise ValueError(f"not an IMAP section: {self.section!r}")
        if self.fields and self.section and not self.section[-1].isdigit():
            raise ValueError("HEADER.FIELDS follows a part number or nothing")
        for name in self.fields:
            if not _FIELD_NAME.fullmatch(name):
                raise ValueError(f"not a header field name: {name!r}")
        if self.partial is not None and (self.partial[0] < 0 or self.partial[1] < 1):
            raise ValueError("a partial fetch starts at 0 or later and asks for one octet or more")
        object.__setattr__(self, "text", self._render())

    def __str__(self) -> str:
        return self.text

    def _render(self) -> str:
        spec = self.section
        if self.fields:
            names = " ".join(str(astring(name)) for name in self.fields)
            spec = f"{spec}{'.' if spec else ''}HEADER.FIELDS ({names})"
        text = f"BODY{'.PEEK' if self.peek else ''}[{spec}]"
        if self.partial is not None:
            text += f"<{self.partial[0]}.{self.partial[1]}>"
        return text


FetchAtt: TypeAlias = Attr | BodySection


def uid_fetch(uids: Uids, items: Iterable[FetchAtt]) -> Command:
    """``UID FETCH uids (items)``, the items in the order given."""
    wanted = " ".join(map(str, items))
    if not wanted:
        raise ValueError("a FETCH asks for at least one item")
    return Command("UID", "FETCH", sequence_set(uids), f"({wanted})")
