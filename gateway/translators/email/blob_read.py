"""The octets of a blob the caller may read, for downloads and for methods that consume blobs.

Blob ids are of three kinds (see blob_ids.py): uploads (RFC 8620 6.1), the messages and parts
of the account's own emails, and parts of the message another of those blobs holds, which
Email/parse reports. :func:`open_blob` readies any of them to stream; :func:`read_blob`
gathers one whole, for Email/set (attachments), Email/import and Email/parse, with the
caller's size limit checked before reading where the size is known and as octets arrive
otherwise, so a blob too large for the method is refused without being held whole.

Everything read whole in one request, parts of other blobs included (their source is read
again for each), is charged to one budget, max_size_blobs_per_request: without it, a request
naming the same upload through many ``S`` ids, or many large blobs, could pull any amount of
data into memory.

Call them before taking an upstream connection for the rest of the work: reading a message
blob takes one of its own.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

from gateway.cache.blobs import BlobTooLarge, BlobVanished
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

__all__ = [
    "BlobBudgetSpent",
    "BlobTooLarge",
    "blob_exists",
    "message_limit",
    "message_structure",
    "open_blob",
    "read_blob",
]

# RFC 5322 2.2: a field starts with its name (printable US-ASCII but ":") and a colon;
# obsolete syntax (4.5.8) allows white space before the colon.
_FIELD_START = re.compile(rb"[!-9;-~]+[ \t]*:")
_EMPTY_LINES = (b"\n", b"\r\n")


class BlobBudgetSpent(BlobTooLarge):
    """The request has read as many blob octets as it may (max_size_blobs_per_request)."""


async def open_blob(env: RequestEnv, blob_id: str) -> Download | None:
    """The blob ready to stream; None when this account has no such blob.

    A part of another blob is cut from that blob read whole: within the request's blob
    budget, or it is taken as not there.
    """
    part_of = parse_part_of_blob(blob_id)
    if part_of is not None:
        try:
            content = await _part_of_blob(env, part_of, message_limit(env))
        except BlobTooLarge:
            return None
        return None if content is None else Download(len(content), _once(content))
    return None if blob_id.startswith("S") else await _open_stored(env, blob_id)


async def blob_exists(env: RequestEnv, blob_id: str) -> bool:
    """Whether this account has such a blob, reading as little as that takes: a message or
    part is looked up in the index and its structure, never fetched (a Blob/copy of 500 ids
    would otherwise read the first megabyte of each from the upstream)."""
    ref = parse_blob_id(blob_id)
    if ref is not None:
        return await open_download(env, ref, fetch=False) is not None
    return await open_blob(env, blob_id) is not None


async def read_blob(env: RequestEnv, blob_id: str, max_size: int) -> bytes | None:
    """The blob's octets; None when this account has no such blob.

    Raises BlobTooLarge when it holds more than ``max_size`` octets, and BlobBudgetSpent when
    the request may read no more blobs. Sizes are checked before the octets are read where
    they are known (an upload's stored size, a message's size in the index, a part's size
    in its structure), else as they arrive.
    """
    part_of = parse_part_of_blob(blob_id)
    if part_of is not None:
        return await _part_of_blob(env, part_of, max_size)
    if blob_id.startswith("S"):
        return None
    return await _read_stored(env, blob_id, max_size)


async def _open_stored(env: RequestEnv, blob_id: str) -> Download | None:
    """An upload, or a message or part of the account's emails, ready to stream."""
    ref = parse_blob_id(blob_id)
    if ref is not None:
        return await open_download(env, ref)
    account_id = env.principal.account_id
    size = await env.services.blobs.size(account_id, blob_id)
    if size is None:
        return None
    return Download(size, env.services.blobs.read(account_id, blob_id, size))


async def _read_stored(env: RequestEnv, blob_id: str, max_size: int) -> bytes | None:
    """An upload, message or part read whole, its size checked and charged first: a message
    or part is looked up without fetching anything until it is known to fit."""
    ref = parse_blob_id(blob_id)
    found = await (
        _open_stored(env, blob_id) if ref is None else open_download(env, ref, fetch=False)
    )
    if found is None:
        return None
    bound = found.bound
    if bound is not None and bound > max_size:
        raise BlobTooLarge(f"larger than {max_size} octets")
    budget = _budget(env)
    budget.charge(bound or 0)
    try:
        return await _gather(found.chunks, max_size, budget if bound is None else None)
    except BlobVanished:
        # An upload that expired or made room for newer ones, or a message expunged, while
        # read: never half of it.
        return None


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


async def _part_of_blob(env: RequestEnv, ref: PartOfBlob, max_size: int) -> bytes | None:
    """A part's content cut from the message in another blob (RFC 8621 4.1.4 blobId: the
    octets with the transfer encoding undone), level by level for a part of a part.

    The source is read once, within the message limit and the request's blob budget; each
    level is cut from the one before, which holds it.
    """
    try:
        content = await _read_stored(env, ref.source, message_limit(env))
    except BlobBudgetSpent:
        raise
    except BlobTooLarge:
        # Email/parse never names parts of a blob this large.
        return None
    for part_id in ref.part_ids:
        if content is None:
            return None
        content = await sized(parse_cost(content), _content_of, content, part_id)
    if content is not None and len(content) > max_size:
        raise BlobTooLarge(f"larger than {max_size} octets")
    return content


def _content_of(source: bytes, part_id: str) -> bytes | None:
    """The content of part ``part_id`` of the message in ``source``, if it is one."""
    root = message_structure(source)
    part = None if root is None else find_part(root, part_id)
    return None if root is None or part is None else part_content(source, part)


async def _gather(chunks: AsyncIterator[bytes], max_size: int, budget: _Budget | None) -> bytes:
    """The chunks joined, refused as soon as they pass ``max_size`` (or the budget, when the
    size was not known to charge beforehand)."""
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if budget is not None:
            budget.charge(len(chunk))
        if len(data) > max_size:
            raise BlobTooLarge(f"larger than {max_size} octets")
    return bytes(data)


@dataclass
class _Budget:
    """The blob octets one request may still read whole."""

    left: int

    def charge(self, octets: int) -> None:
        if octets > self.left:
            self.left = 0
            raise BlobBudgetSpent("this request has read as many blob octets as it may")
        self.left -= octets


_BUDGET = "blob-budget"


def _budget(env: RequestEnv) -> _Budget:
    """The request's blob budget (max_size_blobs_per_request), kept for the whole request."""
    budget = env.memo.get(_BUDGET)
    if budget is None:
        budget = env.memo[_BUDGET] = _Budget(env.services.settings.max_size_blobs_per_request)
    return cast(_Budget, budget)


async def _once(content: bytes) -> AsyncIterator[bytes]:
    yield content
