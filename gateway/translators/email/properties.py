"""Email/get arguments (RFC 8621 4.2) and what each requested property needs from upstream.

Properties fall into the sources they are answered from, cheapest first:

* the index (id, blobId, threadId, mailboxIds, keywords, size, receivedAt): no fetch at all;
* a few header fields (the convenience properties): ``HEADER.FIELDS``, cached parsed too,
  so a list view costs no parsing after the first time;
* the whole header section (``headers``, other ``header:`` fields): ``HEADER``;
* the upstream's PREVIEW (RFC 8970) for ``preview``;
* the MIME structure (bodyStructure, textBody, htmlBody, attachments, hasAttachment,
  bodyValues): the message once, after which only the text parts asked for are fetched.

Everything fetched is immutable and cached, so each source costs one fetch per email, ever.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final

from gateway.jmap.errors import MethodError
from gateway.jmap.standard import (
    Extra,
    GetArgs,
    as_bool,
    as_string_list,
    as_unsigned_int,
    check_properties,
    nullable,
    parse_get,
)
from gateway.mime.bodyparts import BODY_PART_PROPERTIES, DEFAULT_BODY_PROPERTIES
from gateway.mime.headers import CONVENIENCE_PROPERTIES, parse_header_spec

METADATA: Final = ("id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt")
CONVENIENCE: Final = tuple(CONVENIENCE_PROPERTIES)
STRUCTURE: Final = ("bodyStructure", "textBody", "htmlBody", "attachments", "hasAttachment")
BODY: Final = (*STRUCTURE, "bodyValues", "preview")
PROPERTIES: Final = frozenset({*METADATA, *CONVENIENCE, "headers", *BODY})

# RFC 8621 4.2: the properties returned when the client names none.
DEFAULT_PROPERTIES: Final = (
    *METADATA,
    *CONVENIENCE,
    "hasAttachment",
    "preview",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
)

# Header fields the convenience properties read; fetched together, as list views need them.
SUMMARY_FIELDS: Final = tuple(
    sorted({spec.name.upper() for spec in CONVENIENCE_PROPERTIES.values()})
)


class Source(enum.Enum):
    """Where a property's value comes from; see the module docstring."""

    SUMMARY = "summary"  # the convenience properties, parsed
    FIELDS = "fields"
    HEADER = "header"
    PREVIEW = "preview"
    STRUCTURE = "structure"


@dataclass(frozen=True)
class EmailGetArgs:
    get: GetArgs
    properties: list[str]
    body_properties: list[str]
    fetch_text: bool
    fetch_html: bool
    fetch_all: bool
    max_body_value_bytes: int | None

    @property
    def sources(self) -> set[Source]:
        """What the requested properties need besides the index."""
        needed: set[Source] = set()
        for prop in self.properties:
            if prop in CONVENIENCE:
                needed.add(Source.SUMMARY)
            elif prop == "headers":
                needed.add(Source.HEADER)
            elif prop.startswith("header:"):
                spec = parse_header_spec(prop)
                in_summary = spec is not None and spec.name.upper() in SUMMARY_FIELDS
                needed.add(Source.FIELDS if in_summary else Source.HEADER)
            elif prop == "preview":
                needed.add(Source.PREVIEW)
            elif prop in STRUCTURE or prop == "bodyValues":
                needed.add(Source.STRUCTURE)
        return needed

    @property
    def wants_body_values(self) -> bool:
        return "bodyValues" in self.properties and (
            self.fetch_text or self.fetch_html or self.fetch_all
        )


# RFC 8621 4.2: the arguments Email/get adds to the standard ones.
EXTRA: dict[str, Extra] = {
    "bodyProperties": (nullable(as_string_list), None),
    "fetchTextBodyValues": (as_bool, False),
    "fetchHTMLBodyValues": (as_bool, False),
    "fetchAllBodyValues": (as_bool, False),
    "maxBodyValueBytes": (as_unsigned_int, 0),
}


def parse_email_get(arguments: dict[str, Any], max_objects: int) -> EmailGetArgs:
    get = parse_get(arguments, max_objects, extra=EXTRA)
    check_properties("bodyProperties", get.extra["bodyProperties"])
    return EmailGetArgs(
        get,
        _email_properties(get.properties),
        _body_properties(get.extra["bodyProperties"]),
        get.extra["fetchTextBodyValues"],
        get.extra["fetchHTMLBodyValues"],
        get.extra["fetchAllBodyValues"],
        get.extra["maxBodyValueBytes"] or None,
    )


def _email_properties(requested: list[str] | None) -> list[str]:
    if requested is None:
        return list(DEFAULT_PROPERTIES)
    unknown = [p for p in requested if p not in PROPERTIES and parse_header_spec(p) is None]
    if unknown:
        raise MethodError.invalid_arguments(
            f"properties: not Email properties (or not allowed forms): {unknown}",
            arguments=["properties"],
        )
    # RFC 8620 5.1: the id is always returned.
    return ["id", *(p for p in dict.fromkeys(requested) if p != "id")]


def _body_properties(requested: list[str] | None) -> list[str]:
    if requested is None:
        return list(DEFAULT_BODY_PROPERTIES)
    unknown = [
        p for p in requested if p not in BODY_PART_PROPERTIES and parse_header_spec(p) is None
    ]
    if unknown:
        raise MethodError.invalid_arguments(
            f"bodyProperties: not EmailBodyPart properties: {unknown}",
            arguments=["bodyProperties"],
        )
    return list(dict.fromkeys(requested))
