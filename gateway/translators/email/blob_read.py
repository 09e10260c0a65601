"""The whole octets of a blob the caller may read, for methods that consume blobs.

Email/set (attachments), Email/import and Email/parse take blob ids of two kinds: uploads
(RFC 8620 6.1) and the messages and parts of the account's own emails. Both are read here,
with the caller's size limit checked as octets arrive, so a blob too large for the method is
refused without being held whole.

Call it before taking an upstream connection for the rest of the work: reading a message
blob takes one of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.cache.blobs import BlobTooLarge
from gateway.env import RequestEnv
from gateway.translators.email.blob_ids import parse_blob_id
from gateway.translators.email.download import open_download

__all__ = ["BlobTooLarge", "read_blob"]


async def read_blob(env: RequestEnv, blob_id: str, max_size: int) -> bytes | None:
    """The blob's octets; None when this account has no such blob.

    Raises BlobTooLarge when it holds more than ``max_size`` octets.
    """
    ref = parse_blob_id(blob_id)
    if ref is None:
        account_id = env.principal.account_id
        size = await env.services.blobs.size(account_id, blob_id)
        if size is None:
            return None
        if size > max_size:
            raise BlobTooLarge(f"larger than {max_size} octets")
        return await _gather(env.services.blobs.read(account_id, blob_id, size), max_size)
    download = await open_download(env, ref)
    if download is None:
        return None
    if download.size is not None and download.size > max_size:
        raise BlobTooLarge(f"larger than {max_size} octets")
    return await _gather(download.chunks, max_size)


async def _gather(chunks: AsyncIterator[bytes], max_size: int) -> bytes:
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > max_size:
            raise BlobTooLarge(f"larger than {max_size} octets")
    return bytes(data)
