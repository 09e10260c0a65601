"""The octets behind an email's blob ids, streamed from the upstream in pieces.

A whole message is ``BODY.PEEK[]``, read ``CHUNK`` octets at a time with partial fetches
(RFC 3501 6.4.5 ``<offset.length>``), so a 30 MB message never sits whole in the gateway. A
part is its content with the transfer encoding undone (RFC 8621 4.1.4 blobId), cut from the
message by the offsets of the gateway's own structure (``BODY.PEEK[]<start.length>``) and
decoded here, piece by piece, as leniently as the part's other readers decode it
(gateway.mime.bodyparts.decode_transfer).

Not ``BODY[partId]`` or ``BINARY[partId]`` (RFC 3516): for well-formed mail the upstream's
sections and the gateway's parts agree, but mail a stranger wrote need not be well formed,
and MIME parsers part ways on it (lines that start like a boundary and go on, boundaries
past 70 characters, parts past the gateway's bounds): the sizes, bodyValues and downloads of
one Email must describe the same octets, so they all come from one parse. An upstream that
cannot decode a part (Dovecot answers ``NO [PARSE]`` to BINARY of broken base64, or ends the
session) is never asked to.

Each piece takes a pooled connection for one command only, so a slow client does not hold an
upstream connection for the length of its download.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from gateway.cache.blobs import BlobVanished
from gateway.cache.mailboxes import MailboxRecord
from gateway.env import RequestEnv
from gateway.imap.connection import ImapConnection
from gateway.imap.errors import CommandFailed
from gateway.imap.fetch import BodySection
from gateway.mime.bodyparts import IDENTITY_ENCODINGS, decode_transfer, parse_cost
from gateway.offload import sized
from gateway.translators.email.blob_ids import BlobRef, find_part
from gateway.translators.email.fetch import fetch_items, load
from gateway.translators.email.properties import Source
from gateway.translators.mailbox.view import mailbox_view

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Download:
    """A blob ready to stream: its first piece is fetched, so it is known to exist.

    ``size`` is exact or None; ``at_most`` bounds it before any octet is read (for an encoded
    part, its encoded size: decoding base64 or quoted-printable only shrinks).
    """

    size: int | None
    chunks: AsyncIterator[bytes]
    at_most: int | None = None

    @property
    def bound(self) -> int | None:
        return self.size if self.size is not None else self.at_most


@dataclass(frozen=True)
class _Source:
    """Octets ``start`` to ``end`` of a stored message (``end`` None: to its end), with a
    transfer encoding to undo here, if any."""

    folder: MailboxRecord
    uid: int
    start: int = 0
    end: int | None = None
    decode: str | None = None

    def length(self, offset: int) -> int:
        """How many octets to ask for at ``offset`` from ``start``."""
        return CHUNK if self.end is None else min(CHUNK, self.end - self.start - offset)


async def open_download(env: RequestEnv, ref: BlobRef, *, fetch: bool = True) -> Download | None:
    """The blob's octets, or None when the account has no such message or part.

    An id the complete index has never seen is refused without asking the upstream. Without
    ``fetch``, nothing is read yet: the Download says the message (and part) exist and how
    large they are, for a caller that checks that first (Blob/copy needs no more, a reader
    its size); its chunks then start with the first piece, and raise BlobVanished if the
    message is gone by then.
    """
    store = env.index.emails
    if ref.email_id not in await store.records([ref.email_id]):
        if await store.indexed():
            return None
        # The account's first indexing may not have reached it yet: not a 404 before it has
        # (the catch-up waits for it, or answers serverUnavailable past the wait).
        await env.catch_up()
        if ref.email_id not in await store.records([ref.email_id]):
            return None
    view = await mailbox_view(env)
    async with env.upstream() as upstream:
        record = (await store.records([ref.email_id])).get(ref.email_id)
        copies = record.visible_copies() if record is not None else []
        folder = view.records.get(copies[0][0]) if copies else None
        if record is None or folder is None:
            return None
        source = _Source(folder, copies[0][1])
        size: int | None = record.size
        at_most = record.size
        if ref.part_id is not None:
            loaded = await load(
                store, upstream, view.records, {record.id: record}, {Source.STRUCTURE}
            )
            root = loaded.structure.get(record.id)
            part = find_part(root, ref.part_id) if root else None
            if part is None:
                return None
            at_most = part.body_end - part.body_start
            identity = part.transfer_encoding in IDENTITY_ENCODINGS
            # The size of a decoded part is known once decoded: sent without Content-Length.
            size = at_most if identity else None
            decode = None if identity else part.transfer_encoding
            source = _Source(folder, source.uid, part.body_start, part.body_end, decode)
        if not fetch:
            return Download(size, _stream(env, source, None), at_most)
        first = await _piece(await upstream.connection(), source, 0)
    if first is None:
        return None
    return Download(size, _stream(env, source, first), at_most)


async def _piece(conn: ImapConnection, source: _Source, offset: int) -> bytes | None:
    """The octets from ``offset`` (at most ``CHUNK``); None if the message is gone."""
    length = source.length(offset)
    if length <= 0:
        return b""
    item = BodySection(partial=(source.start + offset, length))
    try:
        fetched = await fetch_items(conn, source.folder, {source.uid: ""}, item)
    except CommandFailed:
        return None
    found = fetched.get(source.uid)
    return None if found is None else found.section(item)


async def _stream(env: RequestEnv, source: _Source, first: bytes | None) -> AsyncIterator[bytes]:
    """The pieces from ``first`` (fetched here if None) on, each later one on a connection
    of its own, decoded when the part is encoded. A message expunged meanwhile ends the
    stream early."""
    decoder = PieceDecoder(source.decode) if source.decode else None
    piece = first
    if piece is None:
        async with env.upstream() as upstream:
            piece = await _piece(await upstream.connection(), source, 0)
        if piece is None:
            raise BlobVanished("the message was expunged")
    offset = 0
    while piece is not None:
        offset += len(piece)
        last = len(piece) < CHUNK or source.length(offset) <= 0
        # A MiB of damaged base64 or of quoted-printable is decoded in Python: beside the loop.
        out = await sized(parse_cost(piece), decoder.feed, piece, final=last) if decoder else piece
        if out:
            yield out
        if last:
            return
        async with env.upstream() as upstream:
            piece = await _piece(await upstream.connection(), source, offset)


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
