"""BODYSTRUCTURE (RFC 3501 7.4.2): the text parts a preview can come from."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from gateway.imap.responses.tokens import Value


@dataclass(frozen=True, slots=True)
class TextSection:
    """A text part of a message as BODYSTRUCTURE describes it, and its section number."""

    section: str
    subtype: str  # lower case: "plain", "html"
    charset: str | None
    encoding: str  # lower case Content-Transfer-Encoding
    size: int  # encoded octets


# Multiparts nested deeper than this in a BODYSTRUCTURE are not entered: a server that does
# not bound nesting itself (Cyrus) would otherwise lead the walk past Python's recursion limit.
BODYSTRUCTURE_DEPTH = 64


def text_sections(structure: Value, prefix: str = "", depth: int = 0) -> list[TextSection]:
    """The text parts of a BODYSTRUCTURE in section order, attachments and the insides of
    attached messages left out: the parts a preview can come from."""
    if not isinstance(structure, list) or not structure:
        return []
    if isinstance(structure[0], list):  # multipart: the parts, then the subtype
        found: list[TextSection] = []
        if depth >= BODYSTRUCTURE_DEPTH:
            return found
        parts = itertools.takewhile(lambda p: isinstance(p, list), structure)
        for index, part in enumerate(parts):
            found += text_sections(part, f"{prefix}{index + 1}.", depth + 1)
        return found
    section = prefix.rstrip(".") or "1"
    if len(structure) < 7 or _lower(structure[0]) != "text":
        return []
    # body-type-text: ... size, lines, then the extension data: md5, disposition, ...
    disposition = structure[9] if len(structure) > 9 else None
    if isinstance(disposition, list) and disposition and _lower(disposition[0]) == "attachment":
        return []
    params = structure[2] if isinstance(structure[2], list) else []
    names = [_lower(v) for v in params[::2]]
    charset = params[names.index("charset") * 2 + 1] if "charset" in names else None
    size = structure[6]
    return [
        TextSection(
            section,
            _lower(structure[1]),
            charset.decode("ascii", "replace") if isinstance(charset, bytes) else None,
            _lower(structure[5]) or "7bit",
            int(size) if isinstance(size, str | int) and str(size).isdigit() else 0,
        )
    ]


def _lower(value: Value) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").lower()
    return value.lower() if isinstance(value, str) else ""
