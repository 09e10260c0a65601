"""The octets behind an email's blob ids, streamed from the upstream in pieces.

A whole message is ``BODY.PEEK[]``, read ``CHUNK`` octets at a time with partial fetches
(RFC 3501 6.4.5 ``<offset.length>``), so a 30 MB message never sits whole in the gateway. A
part is its content with the transfer encoding undone (RFC 8621 4.1.4 blobId): parts without
one are read the same way with ``BODY.PEEK[<partId>]``; encoded ones with ``BINARY.PEEK``
(RFC 3516), which the upstream decodes; without BINARY, the part is fetched and decoded here.

Each piece takes a pooled connection for one command only, so a slow client does not hold an
upstream connection for the length of its download.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from gateway.cache.mailboxes import MailboxRecord
from gateway.env import RequestEnv
from gateway.imap.connection import ImapConnection
from gateway.imap.errors import CommandFailed
from gateway.mime.bodyparts import IDENTITY_ENCODINGS, BodyPart, decode_transfer, parse_cost
from gateway.offload import sized
from gateway.translators.email.blob_ids import BlobRef, find_part
from gateway.translators.email.fetch import fetch_items, load
from gateway.translators.email.properties import Source
from gateway.translators.email.view import email_store, synced_view

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Download:
    """A blob ready to stream: its first piece is fetched, so it is known to exist."""

    size: int | None
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True)
class _Source:
    folder: MailboxRecord
    uid: int
    section: str  # e.g. "BODY.PEEK[]", "BINARY.PEEK[2]"


async def open_download(env: RequestEnv, ref: BlobRef) -> Download | None:
    """The blob's octets, or None when the account has no such message or part.

    An id the index has never seen is refused without asking the upstream anything.
    """
    store = email_store(env)
    if ref.email_id not in await store.records([ref.email_id]):
        return None
    async with env.upstream() as conn:
        view, _ = await synced_view(env, conn)
        record = (await store.records([ref.email_id])).get(ref.email_id)
        copies = record.visible_copies() if record is not None else []
        folder = view.records.get(copies[0][0]) if copies else None
        if record is None or folder is None:
            return None
        uid = copies[0][1]
        size: int | None = record.size
        section = "BODY.PEEK[]"
        if ref.part_id is not None:
            loaded = await load(store, conn, view.records, {record.id: record}, {Source.STRUCTURE})
            root = loaded.structure.get(record.id)
            part = find_part(root, ref.part_id) if root else None
            if part is None:
                return None
            if part.transfer_encoding in IDENTITY_ENCODINGS:
                section, size = f"BODY.PEEK[{part.part_id}]", part.body_end - part.body_start
            elif "BINARY" in conn.capabilities:
                section, size = f"BINARY.PEEK[{part.part_id}]", None
            else:
                content = await _decoded_here(conn, folder, uid, part)
                return None if content is None else Download(len(content), _once(content))
        source = _Source(folder, uid, section)
        first = await _piece(conn, source, 0)
    if first is None:
        return None
    return Download(size, _rest(env, source, first))


async def _piece(conn: ImapConnection, source: _Source, offset: int) -> bytes | None:
    """``CHUNK`` octets from ``offset``; None if the message is gone or the part unknown."""
    item = f"{source.section}<{offset}.{CHUNK}>"
    try:
        fetched = await fetch_items(conn, source.folder, {source.uid: ""}, item)
    except CommandFailed:
        return None
    found = fetched.get(source.uid)
    return None if found is None else found.section(item)


async def _rest(env: RequestEnv, source: _Source, first: bytes) -> AsyncIterator[bytes]:
    piece: bytes | None = first
    offset = 0
    while piece:
        yield piece
        if len(piece) < CHUNK:
            return
        offset += len(piece)
        async with env.upstream() as conn:
            piece = await _piece(conn, source, offset)


async def _decoded_here(
    conn: ImapConnection, folder: MailboxRecord, uid: int, part: BodyPart
) -> bytes | None:
    """A part decoded here, for an upstream without BINARY: held whole, so only then."""
    item = f"BODY.PEEK[{part.part_id}]"
    fetched = (await fetch_items(conn, folder, {uid: ""}, item)).get(uid)
    body = None if fetched is None else fetched.section(item)
    if body is None:
        return None
    decoded = await sized(parse_cost(body), decode_transfer, body, part.transfer_encoding)
    return decoded.content


async def _once(content: bytes) -> AsyncIterator[bytes]:
    yield content
