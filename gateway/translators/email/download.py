"""The octets behind an email's blob ids, streamed from the upstream in pieces.

A whole message is ``BODY.PEEK[]``, read ``CHUNK`` octets at a time with partial fetches
(RFC 3501 6.4.5 ``<offset.length>``), so a 30 MB message never sits whole in the gateway. A
part is its content with the transfer encoding undone (RFC 8621 4.1.4 blobId): parts without
one are read the same way with ``BODY.PEEK[<partId>]``; encoded ones with ``BINARY.PEEK``
(RFC 3516), which the upstream decodes. Without BINARY, or where the upstream cannot decode
the part (real mail has broken base64: Dovecot answers ``NO [PARSE]``, or ends the session
when the data stops mid-group; RFC 3516 also allows ``NO [UNKNOWN-CTE]``), the raw section
is read the same way and decoded here as leniently as the part's other readers decode it
(gateway.mime.bodyparts.decode_transfer), piece by piece.

Each piece takes a pooled connection for one command only, so a slow client does not hold an
upstream connection for the length of its download.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from gateway.cache.mailboxes import MailboxRecord
from gateway.env import RequestEnv
from gateway.imap.connection import ImapConnection
from gateway.imap.errors import CommandFailed, ImapError
from gateway.mime.bodyparts import IDENTITY_ENCODINGS, decode_transfer, parse_cost
from gateway.offload import sized
from gateway.translators.email.blob_ids import BlobRef, find_part
from gateway.translators.email.fetch import fetch_items, load
from gateway.translators.email.properties import Source
from gateway.translators.email.view import email_store, synced_view

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Download:
    """A blob ready to stream: its first piece is fetched, so it is known to exist.

    ``size`` is exact or None; ``at_most`` bounds it before any octet is read (for a part the
    upstream decodes, its encoded size: decoding base64 or quoted-printable only shrinks).
    """

    size: int | None
    chunks: AsyncIterator[bytes]
    at_most: int | None = None

    @property
    def bound(self) -> int | None:
        return self.size if self.size is not None else self.at_most


@dataclass(frozen=True)
class _Source:
    folder: MailboxRecord
    uid: int
    section: str  # e.g. "BODY.PEEK[]", "BINARY.PEEK[2]"
    decode: str | None = None  # a transfer encoding to undo here

    def raw(self, part_id: str, encoding: str) -> _Source:
        """The part as stored, to be decoded here if it is encoded."""
        decode = None if encoding in IDENTITY_ENCODINGS else encoding
        return _Source(self.folder, self.uid, f"BODY.PEEK[{part_id}]", decode)


async def open_download(env: RequestEnv, ref: BlobRef, *, fetch: bool = True) -> Download | None:
    """The blob's octets, or None when the account has no such message or part.

    An id the index has never seen is refused without asking the upstream anything. Without
    ``fetch``, nothing is read: the Download only says the message (and part) exist, and how
    large they are, for a caller that needs no more (Blob/copy).
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
        source = _Source(folder, copies[0][1], "BODY.PEEK[]")
        size: int | None = record.size
        at_most = record.size
        fallback: _Source | None = None
        if ref.part_id is not None:
            loaded = await load(store, conn, view.records, {record.id: record}, {Source.STRUCTURE})
            root = loaded.structure.get(record.id)
            part = find_part(root, ref.part_id) if root else None
            if part is None:
                return None
            size = None
            at_most = part.body_end - part.body_start
            encoding = part.transfer_encoding
            if encoding in IDENTITY_ENCODINGS:
                source = source.raw(ref.part_id, encoding)
                size = at_most
            elif "BINARY" in conn.capabilities:
                fallback = source.raw(ref.part_id, encoding)
                source = _Source(source.folder, source.uid, f"BINARY.PEEK[{ref.part_id}]")
            else:
                source = source.raw(ref.part_id, encoding)
        if not fetch:
            return Download(size, _once(b""), at_most)
        try:
            first = await _piece(conn, source, 0)
        except ImapError as exc:
            # Dovecot ends the session rather than serve a part whose base64 stops mid-group.
            if fallback is None:
                raise
            log.info("the upstream could not decode a part (%s); decoding it here", exc)
            first = None
    if first is None and fallback is not None:
        source, fallback = fallback, None
        async with env.upstream() as conn:
            first = await _piece(conn, source, 0)
    if first is None:
        return None
    return Download(size, _stream(env, source, first, fallback), at_most)


async def _once(content: bytes) -> AsyncIterator[bytes]:
    yield content


async def _piece(conn: ImapConnection, source: _Source, offset: int) -> bytes | None:
    """``CHUNK`` octets from ``offset``; None if the message is gone, the part unknown, or
    the upstream cannot decode it (RFC 3516 [UNKNOWN-CTE], Dovecot's [PARSE])."""
    item = f"{source.section}<{offset}.{CHUNK}>"
    try:
        fetched = await fetch_items(conn, source.folder, {source.uid: ""}, item)
    except CommandFailed:
        return None
    found = fetched.get(source.uid)
    return None if found is None else found.section(item)


async def _stream(
    env: RequestEnv, source: _Source, first: bytes | None, fallback: _Source | None
) -> AsyncIterator[bytes]:
    """The pieces from ``first`` (fetched here if None) on, each later one on a connection
    of its own. Should the upstream stop decoding part way, the rest comes from ``fallback``
    decoded here: what it served was the start of what the part decodes to."""
    decoder = PieceDecoder(source.decode) if source.decode else None
    piece = first
    offset = sent = 0
    while True:
        if piece is None:
            async with env.upstream() as conn:
                piece = await _piece(conn, source, offset)
            if piece is None:
                break
        last = len(piece) < CHUNK
        # A MiB of damaged base64 or of quoted-printable is decoded in Python: beside the loop.
        out = await sized(parse_cost(piece), decoder.feed, piece, final=last) if decoder else piece
        if out:
            yield out
            sent += len(out)
        if last:
            return
        offset += len(piece)
        piece = None
    if fallback is not None:
        async for out in _skipping(_stream(env, fallback, None, None), sent):
            yield out


async def _skipping(chunks: AsyncIterator[bytes], count: int) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        if count >= len(chunk):
            count -= len(chunk)
            continue
        yield chunk[count:]
        count = 0


_BASE64_ALPHABET = re.compile(rb"[A-Za-z0-9+/]")


class PieceDecoder:
    """Undoes a transfer encoding piece by piece, exactly as decode_transfer undoes the
    whole: each piece is cut where decoding the parts apart gives what decoding them
    together does, and the rest waits for the next piece."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.held = b""

    def feed(self, data: bytes, *, final: bool) -> bytes:
        data = self.held + data
        cut = len(data) if final else self._cut(data)
        self.held = data[cut:]
        return decode_transfer(data[:cut], self.encoding).content if cut else b""

    def _cut(self, data: bytes) -> int:
        if self.encoding == "base64":
            return _base64_cut(data)
        if self.encoding == "quoted-printable":
            return _quoted_printable_cut(data)
        return len(data)


def _base64_cut(data: bytes) -> int:
    """After a whole number of 4-character groups since the last "=": every group decodes
    alone, octets outside the alphabet are ignored, and "=" ends a run (RFC 2045 6.8)."""
    run_start = data.rfind(b"=") + 1
    letters = [m.start() for m in _BASE64_ALPHABET.finditer(data, run_start)]
    spare = len(letters) % 4
    return letters[-spare] if spare else len(data)


def _quoted_printable_cut(data: bytes) -> int:
    """After the last line end, as quoted-printable is decoded line by line (RFC 2045 6.7);
    within a line longer than a piece, before any white space or "=" escape at its end, and
    before a "=" and carriage return, which the decoder takes for a soft line break that
    runs to the next line feed."""
    line_end = data.rfind(b"\n") + 1
    if line_end:
        return line_end
    soft_break = data.find(b"=\r")
    cut = len(data) - 2 if soft_break < 0 else soft_break
    while cut > 0 and (data[cut - 1] in b" \t\r" or b"=" in data[max(cut - 2, 0) : cut]):
        cut -= 1
    return max(cut, 0)
