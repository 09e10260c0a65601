"""Identity's properties (RFC 8621 6.1), in the order /get returns them by default."""

from __future__ import annotations

import enum
from typing import Any, Final

from gateway.cache.identities import IdentityRecord
from gateway.jmap.properties import Property, PropertyTable


class Source(enum.Enum):
    """Every Identity property is read off its record."""

    RECORD = "record"


def _row(
    name: str, field: str, *, server_set: bool = False, immutable: bool = False
) -> Property[Source]:
    return Property(
        name,
        Source.RECORD,
        server_set=server_set,
        immutable=immutable,
        always=name == "id",
        read=lambda record: getattr(record, field),
    )


# RFC 8621 6.1: id and mayDelete are server-set; email cannot change once created.
PROPERTIES: Final = PropertyTable(
    [
        _row("id", "id", server_set=True),
        _row("name", "name"),
        _row("email", "email", immutable=True),
        _row("replyTo", "reply_to"),
        _row("bcc", "bcc"),
        _row("textSignature", "text_signature"),
        _row("htmlSignature", "html_signature"),
        _row("mayDelete", "may_delete", server_set=True),
    ],
    unknown="unknown Identity properties {}",
)


def render(record: IdentityRecord, properties: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The Identity object of ``record`` with exactly ``properties``."""
    out: dict[str, Any] = {}
    for name in properties:
        read = PROPERTIES[name].read
        if read is None:
            raise AssertionError(f"{name} has no reader")
        out[name] = read(record)
    return out
