"""Upstream fetches for Email/get: only what the properties need, once per email ever.

Emails are grouped by the folder of their first visible copy and by what they lack, and each
group is one UID FETCH: fifty emails of a list view cost one round trip per folder, not fifty.
Whatever comes back is immutable and goes to the cache, so a second Email/get of the same
emails and properties sends no FETCH upstream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.cache.emails import EmailRecord, EmailStore, decode_value, encode_value
from gateway.cache.mailboxes import MailboxRecord
from gateway.imap.connection import ImapConnection
from gateway.imap.fetch import Attr, BodySection, FetchAtt, uid_fetch
from gateway.imap.lazy import LazyConnection
from gateway.imap.responses.bodystructure import TextSection, text_sections
from gateway.imap.responses.fetch import FetchItem, fetches_by_uid
from gateway.imap.sequence import split_uid_set
from gateway.mime.bodyparts import (
    BodyPart,
    body_structure,
    from_plain,
    parse_cost,
    render_cost,
    to_plain,
)
from gateway.mime.bodyvalues import decode_prefix, preview, preview_text
from gateway.mime.headers import convenience_properties, parse_header_block
from gateway.mime.limits import HEADER_SECTION_OCTETS
from gateway.offload import sized
from gateway.translators.email.properties import SUMMARY_FIELDS, Source

WHOLE = BodySection()
HEADER = BodySection("HEADER")
FIELDS = BodySection(fields=SUMMARY_FIELDS)
PREVIEW = Attr.PREVIEW
# Whole messages are fetched at most this many octets per command, and at most this many are
# kept for the body values of the same call; beyond, a value's part is fetched on its own.
WHOLE_PER_FETCH = 16 * 1024 * 1024
# Encoded octets of a text part read for a preview the upstream does not give.
PREVIEW_FETCH = 4096
WHOLE_KEPT = 32 * 1024 * 1024
# Of a header section, only what the header parser reads is kept (and cached): the rest of
# a stranger's megabytes of fields would only take room in Redis.
_READ = HEADER_SECTION_OCTETS
# What unpacking a cached tree costs per octet, in octets of plain input (gateway.offload):
# a part's scalars and fields make a dozen objects out of a few dozen octets.
_PACKED_COST = 16


@dataclass
class Loaded:
    """What the emails of one Email/get hold, from the cache or fetched now."""

    summary: dict[str, dict[str, Any]] = field(default_factory=dict)
    fields: dict[str, bytes] = field(default_factory=dict)
    header: dict[str, bytes] = field(default_factory=dict)
    preview: dict[str, str] = field(default_factory=dict)
    structure: dict[str, BodyPart] = field(default_factory=dict)
    # Whole messages fetched by this call (up to WHOLE_KEPT octets), so body values need no
    # second fetch.
    messages: dict[str, bytes] = field(default_factory=dict)
    kept: int = 0
    # Emails whose structure was parsed by this call, to be cached.
    parsed: set[str] = field(default_factory=set)
    # Emails whose copy was gone upstream when fetched (expunged since the sync).
    vanished: set[str] = field(default_factory=set)

    def header_block(self, email_id: str) -> bytes:
        """The most complete header data loaded for an email."""
        return self.header.get(email_id) or self.fields.get(email_id) or b""


# The account's folders, or a way to read them when a fetch needs them (a warm Email/get,
# answered from the cache, then reads none).
Folders = Mapping[str, MailboxRecord] | Callable[[], Awaitable[Mapping[str, MailboxRecord]]]


def read_with_records(sources: set[Source]) -> list[str]:
    """The cache kinds worth reading in the same round trip as the records (see
    EmailStore.snapshot_with); :func:`load` reads what else it lacks."""
    kinds = set(sources)
    if Source.FIELDS in kinds:
        kinds.add(Source.HEADER)  # the fuller header block answers the fields too
    return sorted(kind.value for kind in kinds)


async def load(
    store: EmailStore,
    upstream: LazyConnection,
    folders: Folders,
    records: dict[str, EmailRecord],
    sources: set[Source],
    *,
    cached: dict[str, dict[str, bytes]] | None = None,
) -> Loaded:
    """What ``sources`` name for ``records``: from the cache (``cached``: the kinds of
    :func:`read_with_records`, already read), else fetched upstream and cached."""
    loaded = Loaded()
    if not sources or not records:
        return loaded
    ids = list(records)
    await _from_cache(store, loaded, ids, sources, cached)
    # Asked of a connection only when one is needed anyway: a preview is missing.
    preview_missing = Source.PREVIEW in sources and any(
        i not in loaded.preview and r.visible_copies() for i, r in records.items()
    )
    has_preview = preview_missing and "PREVIEW" in (await upstream.connection()).capabilities
    groups: dict[tuple[str, frozenset[FetchAtt]], dict[int, str]] = {}
    wanted = _Wanted.of(sources, has_preview)
    for email_id, record in records.items():
        items = _missing(loaded, email_id, wanted)
        copies = record.visible_copies() if items else []
        if copies:
            mailbox_id, uid = copies[0]
            groups.setdefault((mailbox_id, items), {})[uid] = email_id
    if groups:
        sizes = {record.id: record.size for record in records.values()}
        await _fetch_groups(upstream, await _resolved(folders), loaded, groups, sizes)
    if Source.PREVIEW in sources:
        # Without PREVIEW (RFC 8970), or answered NIL (which it allows, and Cyrus 3.6 does
        # until its indexer ran), a preview is made from the start of the text part that
        # BODYSTRUCTURE points at, never from the whole message.
        lacking: dict[str, dict[int, str]] = {}
        for email_id, record in records.items():
            if email_id in loaded.preview or email_id in loaded.vanished:
                continue
            copies = record.visible_copies()
            if copies:
                mailbox_id, uid = copies[0]
                lacking.setdefault(mailbox_id, {})[uid] = email_id
        known = await _resolved(folders) if lacking else {}
        for mailbox_id, owners in lacking.items():
            folder = known.get(mailbox_id)
            if folder is not None:
                await _previews_from_text(await upstream.connection(), folder, owners, loaded)
                groups.setdefault((mailbox_id, frozenset({PREVIEW})), {}).update(owners)
    parsed = await _summarise(loaded, records) if Source.SUMMARY in sources else {}
    await _to_cache(store, loaded, groups, parsed)
    return loaded


async def _summarise(loaded: Loaded, records: dict[str, EmailRecord]) -> dict[str, dict[str, Any]]:
    """Parse the convenience properties of emails that lack them; returns the new ones."""
    blocks = {
        email_id: loaded.header_block(email_id)
        for email_id in records
        if email_id not in loaded.summary
        and (email_id in loaded.header or email_id in loaded.fields)
    }
    parsed = await sized(sum(map(parse_cost, blocks.values())), _summaries, blocks)
    loaded.summary.update(parsed)
    return parsed


def _summaries(blocks: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    return {i: convenience_properties(parse_header_block(b)) for i, b in blocks.items()}


async def _resolved(folders: Folders) -> Mapping[str, MailboxRecord]:
    return await folders() if callable(folders) else folders


async def _fetch_groups(
    upstream: LazyConnection,
    folders: Mapping[str, MailboxRecord],
    loaded: Loaded,
    groups: dict[tuple[str, frozenset[FetchAtt]], dict[int, str]],
    sizes: dict[str, int],
) -> None:
    for (mailbox_id, items), owners in groups.items():
        folder = folders.get(mailbox_id)
        if folder is None:
            loaded.vanished.update(owners.values())
            continue
        conn = await upstream.connection()
        fetched = await fetch_items(conn, folder, owners, *items, sizes=sizes)
        loaded.vanished.update(e for u, e in owners.items() if u not in fetched)
        await _take(loaded, {owners[u]: item for u, item in fetched.items()}, items)


async def fetch_items(
    conn: ImapConnection,
    folder: MailboxRecord,
    owners: dict[int, str],
    *items: FetchAtt,
    sizes: dict[str, int] | None = None,
) -> dict[int, FetchItem]:
    """``items`` of the given uids of one folder, answered in full; none if the folder's
    UIDVALIDITY is no longer the index's: its uids may name other messages, whose octets must
    never be taken (or cached) for these emails. ``sizes`` (email id -> octets) bounds the
    whole messages one FETCH brings."""
    state = await conn.select(folder.name, read_only=True)
    if state.uidvalidity != folder.uidvalidity:
        return {}
    wanted = frozenset(items)
    return await _fetch(conn, owners, wanted, sizes if sizes and WHOLE in wanted else {})


async def _previews_from_text(
    conn: ImapConnection, folder: MailboxRecord, owners: dict[int, str], loaded: Loaded
) -> None:
    """Previews from the first PREVIEW_FETCH octets of each email's first text part: plain
    text where there is some, else HTML (RFC 8621 4.1.4 preview)."""
    structures = await fetch_items(conn, folder, owners, Attr.BODYSTRUCTURE)
    chosen: dict[str, dict[int, TextSection]] = {}
    for uid, item in structures.items():
        sections = text_sections(item.get(Attr.BODYSTRUCTURE))
        plain = [s for s in sections if s.subtype == "plain"]
        html = [s for s in sections if s.subtype == "html"]
        candidates = plain or html
        if not candidates:
            loaded.preview[owners[uid]] = ""
        else:
            chosen.setdefault(candidates[0].section, {})[uid] = candidates[0]
    for section, parts in chosen.items():
        item_name = BodySection(section, partial=(0, PREVIEW_FETCH))
        fetched = await fetch_items(conn, folder, {u: owners[u] for u in parts}, item_name)
        for uid, item in fetched.items():
            part = parts[uid]
            text, _ = decode_prefix(item.section(item_name) or b"", part.encoding, part.charset)
            loaded.preview[owners[uid]] = preview_text(text, html=part.subtype == "html")


async def _from_cache(
    store: EmailStore,
    loaded: Loaded,
    ids: list[str],
    sources: set[Source],
    cached: dict[str, dict[str, bytes]] | None,
) -> None:
    if cached is None:
        cached = await store.cached_kinds(read_with_records(sources), ids)
    await _take_cached(loaded, cached)
    if Source.SUMMARY in sources:
        # Raw header data answers the convenience properties when their parsed form is gone.
        lacking = [
            i
            for i in ids
            if i not in loaded.summary and i not in loaded.header and i not in loaded.fields
        ]
        if lacking:
            kinds = [Source.FIELDS.value, Source.HEADER.value]
            await _take_cached(loaded, await store.cached_kinds(kinds, lacking))


async def _take_cached(loaded: Loaded, cached: dict[str, dict[str, bytes]]) -> None:
    loaded.summary.update(
        {i: decode_value(v) for i, v in cached.get(Source.SUMMARY.value, {}).items()}
    )
    loaded.header.update(cached.get(Source.HEADER.value, {}))
    loaded.fields.update(cached.get(Source.FIELDS.value, {}))
    loaded.preview.update({i: v.decode() for i, v in cached.get(Source.PREVIEW.value, {}).items()})
    structures = cached.get(Source.STRUCTURE.value, {})
    size = _PACKED_COST * sum(map(len, structures.values()))
    loaded.structure.update(await sized(size, _decode_structures, structures))


def _decode_structures(cached: dict[str, bytes]) -> dict[str, BodyPart]:
    return {i: from_plain(decode_value(v)) for i, v in cached.items()}


def _encode_structures(structures: dict[str, BodyPart]) -> dict[str, bytes]:
    return {i: encode_value(to_plain(root)) for i, root in structures.items()}


@dataclass(frozen=True, slots=True)
class _Wanted:
    """What one load asks of each email, decided once per call rather than per email (a
    list screen asks it of 50)."""

    structure: bool
    preview: bool
    header: bool
    fields: bool
    summary: bool

    @classmethod
    def of(cls, sources: set[Source], has_preview: bool) -> _Wanted:
        return cls(
            Source.STRUCTURE in sources,
            Source.PREVIEW in sources and has_preview,
            Source.HEADER in sources,
            Source.FIELDS in sources,
            Source.SUMMARY in sources,
        )


_NOTHING: frozenset[FetchAtt] = frozenset()


def _missing(loaded: Loaded, email_id: str, wanted: _Wanted) -> frozenset[FetchAtt]:
    if wanted.structure and email_id not in loaded.structure:
        return frozenset({WHOLE})
    items: set[FetchAtt] = set()
    if wanted.preview and email_id not in loaded.preview:
        items.add(PREVIEW)
    raw = email_id in loaded.header or email_id in loaded.fields
    if wanted.header and email_id not in loaded.header:
        items.add(HEADER)
    elif not raw and (wanted.fields or (wanted.summary and email_id not in loaded.summary)):
        items.add(FIELDS)
    return frozenset(items) if items else _NOTHING


async def _fetch(
    conn: ImapConnection,
    owners: dict[int, str],
    items: frozenset[FetchAtt],
    sizes: dict[str, int],
) -> dict[int, FetchItem]:
    fetched: dict[int, FetchItem] = {}
    wanted = [Attr.UID, *sorted(items, key=str)]
    for chunk in _chunks(owners, sizes):
        result = await conn.execute(uid_fetch(chunk, wanted))
        fetched.update(
            (uid, item)
            for uid, item in fetches_by_uid(result.untagged).items()
            if uid in owners and all(_answered(item, name) for name in items)
        )
    return fetched


def _chunks(owners: dict[int, str], sizes: dict[str, int]) -> list[str]:
    """UID sets to fetch, each of at most WHOLE_PER_FETCH octets by the emails' sizes."""
    pages: list[list[int]] = [[]]
    total = 0
    for uid in sorted(owners):
        size = sizes.get(owners[uid], 0)
        if pages[-1] and total + size > WHOLE_PER_FETCH:
            pages.append([])
            total = 0
        pages[-1].append(uid)
        total += size
    return [chunk for page in pages if page for chunk in split_uid_set(page)]


def _answered(item: FetchItem, name: FetchAtt) -> bool:
    """Whether the response holds the item asked for (PREVIEW may be NIL, RFC 8970)."""
    if name == FIELDS:
        return item.header_fields() is not None
    return name == PREVIEW or name in item


async def _take(loaded: Loaded, fetched: dict[str, FetchItem], items: frozenset[FetchAtt]) -> None:
    for email_id, item in fetched.items():
        if WHOLE in items:
            message = item.section(WHOLE) or b""
            root, text = await sized(parse_cost(message), _structure_and_preview, message)
            loaded.parsed.add(email_id)
            if loaded.kept + len(message) <= WHOLE_KEPT:
                loaded.messages[email_id] = message
                loaded.kept += len(message)
            loaded.structure[email_id] = root
            loaded.header.setdefault(email_id, message[: min(root.body_start, _READ)])
            loaded.preview.setdefault(email_id, text)
        if HEADER in items:
            loaded.header[email_id] = (item.section(HEADER) or b"")[:_READ]
        if FIELDS in items:
            loaded.fields[email_id] = (item.header_fields() or b"")[:_READ]
        if PREVIEW in items and item.preview is not None:
            loaded.preview[email_id] = item.preview


def _structure_and_preview(message: bytes) -> tuple[BodyPart, str]:
    """A whole message's parse: its MIME tree and preview (off the loop when it is large)."""
    root = body_structure(message)
    return root, preview(message, root)


async def _to_cache(
    store: EmailStore,
    loaded: Loaded,
    groups: dict[tuple[str, frozenset[FetchAtt]], dict[int, str]],
    parsed: dict[str, dict[str, Any]],
) -> None:
    fetched = {e for owners in groups.values() for e in owners.values()} - loaded.vanished
    new = {i: loaded.structure[i] for i in fetched & loaded.parsed}
    size = sum(map(render_cost, new.values()))
    await store.cache(
        {
            Source.SUMMARY.value: {i: encode_value(value) for i, value in parsed.items()},
            Source.STRUCTURE.value: await sized(size, _encode_structures, new),
            Source.HEADER.value: {i: loaded.header[i] for i in fetched if i in loaded.header},
            Source.FIELDS.value: {i: loaded.fields[i] for i in fetched if i in loaded.fields},
            Source.PREVIEW.value: {
                i: loaded.preview[i].encode() for i in fetched if i in loaded.preview
            },
        }
    )
