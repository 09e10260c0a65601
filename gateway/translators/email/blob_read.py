"""The octets of a blob the caller may read, for downloads and for methods that consume blobs.

Blob ids are of three kinds (see blob_ids.py): uploads (RFC 8620 6.1), the messages and parts
of the account's own emails, and parts of the message another of those blobs holds, which
Email/parse reports. :func:`open_blob` readies any of them to stream; :func:`read_blob`
gathers one whole, for Email/set (attachments), Email/import and Email/parse, with the
caller's size limit checked as octets arrive, so a blob too large for the method is refused
without being held whole.

Call them before taking an upstream connection for the rest of the work: reading a message
blob takes one of its own.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from gateway.cache.blobs import BlobTooLarge
from gateway.env import RequestEnv
from gateway.mime.bodyparts import BodyPart, body_structure, parse_cost, part_content
from gateway.mime.limits import HEADER_SECTION_OCTETS
from gateway.offload import sized
from gateway.translators.email.blob_ids import (
    PartOfBlob,
    find_part,
    parse_blob_id,
    parse_part_of_blob,
)
from gateway.translators.email.download import Download, open_download

__all__ = ["BlobTooLarge", "message_limit", "message_structure", "open_blob", "read_blob"]

# RFC 5322 2.2: a field starts with its name (printable US-ASCII but ":") and a colon;
# obsolete syntax (4.5.8) allows white space before the colon.
_FIELD_START = re.compile(rb"[!-9;-~]+[ \t]*:")
_EMPTY_LINES = (b"\n", b"\r\n")


async def open_blob(env: RequestEnv, blob_id: str) -> Download | None:
    """The blob ready to stream; None when this account has no such blob."""
    ref = parse_blob_id(blob_id)
    if ref is not None:
        return await open_download(env, ref)
    part_of = parse_part_of_blob(blob_id)
    if part_of is not None:
        content = await _part_of_blob(env, part_of)
        return None if content is None else Download(len(content), _once(content))
    account_id = env.principal.account_id
    size = await env.services.blobs.size(account_id, blob_id)
    if size is None:
        return None
    return Download(size, env.services.blobs.read(account_id, blob_id, size))


async def read_blob(env: RequestEnv, blob_id: str, max_size: int) -> bytes | None:
    """The blob's octets; None when this account has no such blob.

    Raises BlobTooLarge when it holds more than ``max_size`` octets.
    """
    download = await open_blob(env, blob_id)
    if download is None:
        return None
    if download.size is not None and download.size > max_size:
        raise BlobTooLarge(f"larger than {max_size} octets")
    return await _gather(download.chunks, max_size)


def message_limit(env: RequestEnv) -> int:
    """The most octets read whole to parse a blob as a message: the upload limit, which
    bounds every message a client could hand the gateway itself."""
    return env.services.limits.max_size_upload


def message_structure(data: bytes) -> BodyPart | None:
    """The MIME structure of a blob that holds a message (RFC 5322); None if it does not.

    A message starts with a header field, and every line up to the empty line that ends the
    header section is a field or the continuation of one; without an empty line, the whole
    blob must be (RFC 5322 3.5 makes the body optional). Any other line where a field should
    be, such as text or binary data, means there is no header section whose end can be
    trusted (what the stdlib calls a missing header/body separator). As everywhere, only
    the first HEADER_SECTION_OCTETS of the header section are read.
    """
    pos = 0
    read = min(len(data), HEADER_SECTION_OCTETS)
    while pos < read:
        newline = data.find(b"\n", pos, read)
        end = read if newline < 0 else newline + 1
        line = data[pos:end]
        if line in _EMPTY_LINES:
            break
        folded = line.startswith((b" ", b"\t"))
        if (folded and pos == 0) or (not folded and _FIELD_START.match(line) is None):
            return None
        pos = end
    return body_structure(data) if pos > 0 else None


async def _part_of_blob(env: RequestEnv, ref: PartOfBlob) -> bytes | None:
    """A part's content cut from the message in another blob (RFC 8621 4.1.4 blobId: the
    octets with the transfer encoding undone)."""
    try:
        source = await read_blob(env, ref.source, message_limit(env))
    except BlobTooLarge:
        # Email/parse never names parts of a blob this large.
        return None
    if source is None:
        return None
    return await sized(parse_cost(source), _content_of, source, ref.part_id)


def _content_of(source: bytes, part_id: str) -> bytes | None:
    """The content of part ``part_id`` of the message in ``source``, if it is one."""
    root = message_structure(source)
    part = None if root is None else find_part(root, part_id)
    return None if root is None or part is None else part_content(source, part)


async def _gather(chunks: AsyncIterator[bytes], max_size: int) -> bytes:
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > max_size:
            raise BlobTooLarge(f"larger than {max_size} octets")
    return bytes(data)


async def _once(content: bytes) -> AsyncIterator[bytes]:
    yield content
