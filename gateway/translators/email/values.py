"""bodyValues (RFC 8621 4.2): the text parts asked for, fetched alone when the message is not.

A part is fetched with ``BODY.PEEK[<partId>]`` (partIds are IMAP section numbers); where the
upstream's part is not the one the gateway parsed (it splits malformed MIME otherwise), the
part is cut from the message by the gateway's offsets instead. Parts up to
CACHED_PART octets (nearly every text body) are fetched whole and their decoded text kept in
Redis for TEXT_TTL seconds, so opening the same email again, with any ``maxBodyValueBytes``,
sends no FETCH. Of a larger part only the first octets are fetched under
``maxBodyValueBytes``: four times the limit covers the usual transfer encodings and charsets
(base64 is 4/3, quoted-printable at most 3); a part whose first octets still hold too little
text (UTF-32 in base64 needs over five) is fetched again with a larger window, so the value is
always cut by the limit, never by the fetch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.cache.emails import EmailRecord, EmailStore
from gateway.cache.mailboxes import MailboxRecord
from gateway.imap.connection import ImapConnection
from gateway.imap.fetch import BodySection
from gateway.imap.lazy import LazyConnection
from gateway.mime.bodyparts import BodyPart, parse_cost, text_html_attachments
from gateway.mime.bodyvalues import (
    EmailBodyValue,
    body_value,
    part_text,
    prefix_body_value,
    text_value,
)
from gateway.offload import sized
from gateway.translators.email.fetch import fetch_items

# Slack for line breaks and a cut multi-octet sequence beyond the 4x bound.
_FETCH_SLACK = 1024
# Encoded octets up to which a part is fetched whole and its text cached.
CACHED_PART = 256 * 1024
# How long a part's text stays cached after it was last fetched (not refreshed on reads).
TEXT_TTL = 2 * 24 * 3600


@dataclass(frozen=True)
class ValueRequest:
    fetch_text: bool
    fetch_html: bool
    fetch_all: bool
    max_bytes: int | None

    def parts(self, root: BodyPart) -> list[BodyPart]:
        """The text parts whose values are asked for, in bodyStructure order."""
        wanted: set[str | None] = set()
        if self.fetch_text or self.fetch_html:
            text, html, _ = text_html_attachments(root)
            wanted.update(p.part_id for p in (text if self.fetch_text else []))
            wanted.update(p.part_id for p in (html if self.fetch_html else []))
        return [
            part
            for part in root.walk()
            if part.part_id is not None
            and part.type.startswith("text/")
            and (self.fetch_all or part.part_id in wanted)
        ]

    def window(self, part: BodyPart, factor: int = 4) -> int | None:
        """How many encoded octets to fetch; None for the whole part."""
        encoded = part.body_end - part.body_start
        if self.max_bytes is None or encoded <= CACHED_PART:
            return None
        window = factor * self.max_bytes + _FETCH_SLACK
        return None if window >= encoded else window

    def section(self, part: BodyPart, factor: int = 4, *, cut: bool = False) -> BodySection:
        """The part's section, or with ``cut`` its octets cut from the message by the
        gateway's own offsets (for a message the upstream splits into parts otherwise)."""
        window = self.window(part, factor)
        if cut:
            return BodySection(partial=(part.body_start, self.expected(part, factor)))
        return BodySection(str(part.part_id), partial=None if window is None else (0, window))

    def expected(self, part: BodyPart, factor: int = 4) -> int:
        """How many octets a fetch of :meth:`section` returns where the upstream's part is
        the gateway's."""
        encoded = part.body_end - part.body_start
        window = self.window(part, factor)
        return encoded if window is None else min(window, encoded)

    def value(self, part: BodyPart, body: bytes, factor: int = 4) -> EmailBodyValue | None:
        """The part's value from what a fetch of :meth:`section` returned; None if too little."""
        window = self.window(part, factor)
        if window is None or self.max_bytes is None or len(body) < window:
            return body_value(part, body, max_bytes=self.max_bytes)
        return prefix_body_value(part, body, max_bytes=self.max_bytes)


async def body_values(
    upstream: LazyConnection,
    store: EmailStore,
    request: ValueRequest,
    folders: Mapping[str, MailboxRecord],
    records: dict[str, EmailRecord],
    structures: dict[str, BodyPart],
    messages: dict[str, bytes],
) -> dict[str, dict[str, EmailBodyValue]]:
    """Per email id, its bodyValues by partId."""
    values: dict[str, dict[str, EmailBodyValue]] = {i: {} for i in structures}
    wanted = {email_id: request.parts(root) for email_id, root in structures.items()}
    cached = await store.texts(i for i, parts in wanted.items() if parts)
    fresh: dict[str, dict[str, list[Any]]] = {}
    groups: dict[tuple[str, tuple[BodySection, ...]], dict[int, str]] = {}
    for email_id, parts in wanted.items():
        known = cached.get(email_id, {})
        message = messages.get(email_id)
        missing = []
        for part in parts:
            part_id = str(part.part_id)
            if part_id in known:
                text, problem = known[part_id]
                values[email_id][part_id] = text_value(
                    part, text, problem, max_bytes=request.max_bytes
                )
            elif message is not None:
                body = message[part.body_start : part.body_end]
                if not await _take(request, part, body, values, fresh, email_id):
                    # The whole part is here: too little text for the limit is all there is.
                    values[email_id][part_id] = await sized(
                        parse_cost(body), body_value, part, body, max_bytes=request.max_bytes
                    )
            else:
                missing.append(part)
        copies = records[email_id].visible_copies()
        if missing and copies:
            wanted[email_id] = missing
            mailbox_id, uid = copies[0]
            sections = tuple(request.section(p) for p in missing)
            groups.setdefault((mailbox_id, sections), {})[uid] = email_id
    short: list[tuple[str, int, str, BodyPart]] = []
    for (mailbox_id, sections), owners in groups.items():
        folder = folders.get(mailbox_id)
        if folder is None:
            continue
        conn = await upstream.connection()
        for uid, item in (await fetch_items(conn, folder, owners, *sections)).items():
            owner = owners[uid]
            for part, section in zip(wanted[owner], sections, strict=True):
                octets = item.section(section) or b""
                if len(octets) != request.expected(part):
                    # Not the part the gateway parsed: MIME parsers part ways on mail that
                    # is not well formed (Dovecot takes a line that only starts like the
                    # boundary for one). Values must describe the parts bodyStructure lists.
                    octets = await _cut(conn, request, folder, uid, part)
                if not await _take(request, part, octets, values, fresh, owner):
                    short.append((mailbox_id, uid, owner, part))
    for mailbox_id, uid, owner, part in short:
        values[owner][str(part.part_id)] = await _wider(
            await upstream.connection(), request, folders[mailbox_id], uid, part
        )
    await store.cache_texts(fresh, TEXT_TTL)
    return values


async def _take(
    request: ValueRequest,
    part: BodyPart,
    body: bytes,
    values: dict[str, dict[str, EmailBodyValue]],
    fresh: dict[str, dict[str, list[Any]]],
    email_id: str,
) -> bool:
    """Turn fetched octets into the part's value (and cache its text when whole); False if
    they hold too little text for the limit. Decoding a large part runs off the loop."""
    part_id = str(part.part_id)
    if request.window(part) is None:
        value, text, problem = await sized(parse_cost(body), _whole_value, request, part, body)
        values[email_id][part_id] = value
        if part.body_end - part.body_start <= CACHED_PART:
            fresh.setdefault(email_id, {})[part_id] = [text, problem]
        return True
    found = await sized(parse_cost(body), request.value, part, body)
    if found is None:
        return False
    values[email_id][part_id] = found
    return True


def _whole_value(
    request: ValueRequest, part: BodyPart, body: bytes
) -> tuple[EmailBodyValue, str, bool]:
    """A whole part's value, and its text and encoding problem for the cache."""
    text, problem = part_text(part, body)
    return text_value(part, text, problem, max_bytes=request.max_bytes), text, problem


async def _cut(
    conn: ImapConnection,
    request: ValueRequest,
    folder: MailboxRecord,
    uid: int,
    part: BodyPart,
    factor: int = 4,
) -> bytes:
    """The part's (first) octets cut from the message by the gateway's own offsets."""
    if request.expected(part, factor) == 0:
        return b""  # RFC 3501 6.4.5: a partial fetch asks for at least one octet
    section = request.section(part, factor, cut=True)
    item = (await fetch_items(conn, folder, {uid: ""}, section)).get(uid)
    return (item.section(section) if item is not None else None) or b""


async def _wider(
    conn: ImapConnection, request: ValueRequest, folder: MailboxRecord, uid: int, part: BodyPart
) -> EmailBodyValue:
    """Fetch more of a part until its value reaches the limit (or the part is whole)."""
    factor = 16
    while True:
        body = await _cut(conn, request, folder, uid, part, factor)
        value = await sized(parse_cost(body), request.value, part, body, factor)
        if value is not None:
            return value
        factor *= 4
