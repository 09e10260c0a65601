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
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from gateway.cache.emails import EmailRecord
from gateway.jmap.errors import MethodError
from gateway.jmap.properties import Property, PropertyTable
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
from gateway.translators.email.blob_ids import message_blob_id
from gateway.translators.keywords import keywords_from_flags


class Source(enum.Enum):
    """What Email/get may load besides the index; each is cached apart (see the module
    docstring), under its value as the cache kind."""

    SUMMARY = "summary"  # the convenience properties, parsed
    FIELDS = "fields"
    HEADER = "header"
    PREVIEW = "preview"
    STRUCTURE = "structure"


class Origin(enum.Enum):
    """Where a named Email property's value comes from (RFC 8621 4.1.1 to 4.1.4)."""

    INDEX = "index"  # the index record (metadata): no fetch
    SUMMARY = "summary"  # a convenience header field, parsed and cached with the others
    HEADER = "header"  # the whole header section
    PREVIEW = "preview"  # the upstream's PREVIEW, else the first text part
    STRUCTURE = "structure"  # the MIME tree: bodyStructure and the lists derived from it
    BODY_VALUES = "bodyValues"  # the text parts' contents, read after the structure
    COMPUTED = "computed"  # hasAttachment, computed from the structure


# What each origin needs loaded: the Email/get fetch plan reads this.
LOADS: Final[dict[Origin, frozenset[Source]]] = {
    Origin.INDEX: frozenset(),
    Origin.SUMMARY: frozenset({Source.SUMMARY}),
    Origin.HEADER: frozenset({Source.HEADER}),
    Origin.PREVIEW: frozenset({Source.PREVIEW}),
    Origin.STRUCTURE: frozenset({Source.STRUCTURE}),
    Origin.BODY_VALUES: frozenset({Source.STRUCTURE}),
    Origin.COMPUTED: frozenset({Source.STRUCTURE}),
}


@functools.lru_cache(maxsize=16384)
def utc_date(seconds: int) -> str:
    """RFC 8620 1.4 UTCDate: ``2014-10-30T06:12:00Z`` (kept: a list screen shows the same
    emails' dates again and again)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _metadata(
    name: str, read: Callable[[EmailRecord], Any], *, server_set: bool, immutable: bool = True
) -> Property[Origin]:
    """RFC 8621 4.1.1: the properties the index knows of a stored email."""
    return Property(
        name,
        Origin.INDEX,
        server_set=server_set,
        immutable=immutable,
        always=name == "id",
        read=read,
    )


def _content(name: str, origin: Origin, *, default: bool = True) -> Property[Origin]:
    """RFC 8621 4.1.2 to 4.1.4: the message's content, all immutable; of it only preview
    and hasAttachment are server-set."""
    server_set = origin in (Origin.PREVIEW, Origin.COMPUTED)
    return Property(name, origin, server_set=server_set, immutable=True, default=default)


# RFC 8621 4.1: the named Email properties, the default set (RFC 8621 4.2) first and in its
# order. header:Name:asForm properties are rule-based (gateway.mime.headers.parse_header_spec).
PROPERTIES: Final = PropertyTable(
    [
        _metadata("id", lambda record: record.id, server_set=True),
        _metadata("blobId", lambda record: message_blob_id(record.id), server_set=True),
        _metadata("threadId", lambda record: record.thread_id, server_set=True),
        _metadata(
            "mailboxIds", lambda record: record.mailbox_ids, server_set=False, immutable=False
        ),
        _metadata(
            "keywords",
            lambda record: keywords_from_flags(record.flags),
            server_set=False,
            immutable=False,
        ),
        _metadata("size", lambda record: record.size, server_set=True),
        # Given on create (the IMAP APPEND date), fixed after.
        _metadata("receivedAt", lambda record: utc_date(record.received_at), server_set=False),
        *(_content(name, Origin.SUMMARY) for name in CONVENIENCE_PROPERTIES),
        _content("hasAttachment", Origin.COMPUTED),
        _content("preview", Origin.PREVIEW),
        _content("bodyValues", Origin.BODY_VALUES),
        _content("textBody", Origin.STRUCTURE),
        _content("htmlBody", Origin.STRUCTURE),
        _content("attachments", Origin.STRUCTURE),
        _content("headers", Origin.HEADER, default=False),
        _content("bodyStructure", Origin.STRUCTURE, default=False),
    ],
    unknown="not Email properties (or not allowed forms): {}",
)
METADATA: Final = PROPERTIES.named(Origin.INDEX)

# Header fields the convenience properties read; fetched together, as list views need them.
SUMMARY_FIELDS: Final = tuple(
    sorted({spec.name.upper() for spec in CONVENIENCE_PROPERTIES.values()})
)


@dataclass(frozen=True)
class EmailGetArgs:
    get: GetArgs
    properties: list[str]
    body_properties: list[str]
    fetch_text: bool
    fetch_html: bool
    fetch_all: bool
    max_body_value_bytes: int | None

    @functools.cached_property
    def sources(self) -> set[Source]:
        """What the requested properties need besides the index (asked per email: kept)."""
        needed: set[Source] = set()
        for prop in self.properties:
            origin = PROPERTIES.sources.get(prop)
            if origin is not None:
                needed |= LOADS[origin]
            elif prop.startswith("header:"):
                spec = parse_header_spec(prop)
                in_summary = spec is not None and spec.name.upper() in SUMMARY_FIELDS
                needed.add(Source.FIELDS if in_summary else Source.HEADER)
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
    return PROPERTIES.select(requested, _is_header_property)


def _is_header_property(prop: str) -> bool:
    return parse_header_spec(prop) is not None


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
