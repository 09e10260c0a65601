"""An Email object from what is known of its message (RFC 8621 4.1), for Email/get and /parse.

Both methods answer the same properties of a message; they differ in where the message comes
from and what it is besides its content. Email/get has a stored message: metadata from the
index, content loaded from the cache or the upstream, part blob ids naming the upstream's
sections. Email/parse has a blob: no metadata (RFC 8621 4.9), content parsed from the octets
at hand, part blob ids naming whatever can serve those octets again. So each caller gives
the metadata and the part blob ids; the content properties are rendered here, once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, NamedTuple

from gateway.mime.bodyparts import BodyPart, has_attachment, text_html_attachments
from gateway.mime.bodyvalues import EmailBodyValue
from gateway.mime.headers import (
    CONVENIENCE_PROPERTIES,
    HeaderSpec,
    RawHeader,
    header_property,
    headers_property,
    parse_header_spec,
)
from gateway.translators.email.properties import PROPERTIES, Origin

_BodyLists = tuple[list[BodyPart], list[BodyPart], list[BodyPart]]
_ORIGINS = PROPERTIES.sources


class Content(NamedTuple):
    """What an Email's content properties are made of (a tuple: Email/get makes one per
    Email of a list screen, and a frozen dataclass costs several times as much to build).

    ``summary`` holds the convenience properties already parsed (Email/get caches them);
    without it they are read from ``headers``. ``root`` is None when the structure was not
    needed. ``part_blob_id`` maps a partId to the blob id that serves the part's octets.
    """

    headers: Sequence[RawHeader]
    summary: Mapping[str, Any] | None
    root: BodyPart | None
    preview: str
    values: dict[str, EmailBodyValue]
    part_blob_id: Callable[[str], str]


def render_email(
    properties: Collection[str],
    body_properties: Collection[str],
    content: Content,
    metadata: Callable[[str], Any],
) -> dict[str, Any]:
    """The Email with exactly ``properties`` (validated by the caller), in their order.

    ``metadata`` answers the properties that are not the message's content (RFC 8621 4.1.1).
    """
    root = content.root
    lists: _BodyLists = text_html_attachments(root) if root is not None else ([], [], [])
    named = _by_name(content.headers)
    obj: dict[str, Any] = {}
    for prop in properties:
        origin = _ORIGINS.get(prop)
        if origin is None:
            # header:Name:asForm, the rule-based properties.
            obj[prop] = _header(named, prop)
        elif origin is Origin.INDEX:
            obj[prop] = metadata(prop)
        elif origin is Origin.SUMMARY:
            obj[prop] = (
                content.summary[prop]
                if content.summary is not None
                else _header(named, CONVENIENCE_PROPERTIES[prop])
            )
        elif origin is Origin.HEADER:
            obj[prop] = headers_property(content.headers)
        elif origin is Origin.PREVIEW:
            obj[prop] = content.preview
        elif origin is Origin.BODY_VALUES:
            obj[prop] = content.values
        elif origin is Origin.COMPUTED:
            obj[prop] = has_attachment(lists[2])
        elif root is not None:
            obj[prop] = _body_property(prop, root, lists, body_properties, content.part_blob_id)
    return obj


def _by_name(headers: Sequence[RawHeader]) -> dict[str, list[RawHeader]]:
    """The header fields by lower-cased name: each header: property then looks at its own
    fields only, not the whole section (up to MAX_PROPERTIES of them, for each Email)."""
    named: dict[str, list[RawHeader]] = {}
    for header in headers:
        named.setdefault(header.name.lower(), []).append(header)
    return named


def _header(named: Mapping[str, list[RawHeader]], prop: str | HeaderSpec) -> Any:
    spec = _spec(prop) if isinstance(prop, str) else prop
    if spec is None:
        raise ValueError(f"not a valid header property: {prop!r}")
    return header_property(named.get(spec.name.lower(), []), spec)


@functools.lru_cache(maxsize=4096)
def _spec(prop: str) -> HeaderSpec | None:
    """A property name's HeaderSpec, parsed once however many Emails are rendered."""
    return parse_header_spec(prop)


def _body_property(
    prop: str,
    root: BodyPart,
    lists: _BodyLists,
    properties: Collection[str],
    part_blob_id: Callable[[str], str],
) -> Any:
    def render(part: BodyPart) -> dict[str, Any]:
        return part.to_jmap(properties, blob_id=part_blob_id, header_property=_part_header)

    if prop == "bodyStructure":
        return render(root)
    text, html, attachments = lists
    chosen = {"textBody": text, "htmlBody": html, "attachments": attachments}[prop]
    return [render(part) for part in chosen]


def _part_header(headers: list[tuple[str, str]], prop: str) -> Any:
    return header_property([RawHeader(name, value) for name, value in headers], prop)
