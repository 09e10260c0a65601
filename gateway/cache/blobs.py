"""Uploaded blobs (RFC 8620 6.1), kept in Redis where every replica can read them.

An upload is appended to a partial key as it arrives, in chunks of :data:`CHUNK` octets, so a
gateway process holds little of it in memory, and renamed to its final key once complete. The
blob id is a digest of the content, so the same octets uploaded twice are stored once. Keys carry
the uploader's account hash tag: another account cannot name them. Unreferenced uploads expire
(RFC 8620 6: not before an hour has passed).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.cache.keys import AccountKeys

CHUNK = 1024 * 1024
BLOB_PREFIX = "U"
_DIGEST_BYTES = 20


class BlobTooLarge(Exception):
    """The upload passed the size limit; nothing was kept."""


@dataclass(frozen=True)
class StoredBlob:
    blob_id: str
    size: int


def blob_id_for(digest: bytes) -> str:
    return BLOB_PREFIX + base64.b32encode(digest[:_DIGEST_BYTES]).decode().lower()


class BlobStore:
    def __init__(self, client: Redis | RedisCluster, ttl_seconds: int) -> None:
        self._client = client
        self._ttl = ttl_seconds

    async def put(self, account_id: str, body: AsyncIterable[bytes], max_size: int) -> StoredBlob:
        """Store ``body``; raise BlobTooLarge as soon as it passes ``max_size`` octets."""
        keys = AccountKeys(account_id)
        partial = keys.partial(secrets.token_hex(8))
        digest = hashlib.sha256()
        size = 0
        pending = bytearray()
        try:
            async for chunk in body:
                size += len(chunk)
                if size > max_size:
                    raise BlobTooLarge(f"larger than {max_size} octets")
                digest.update(chunk)
                pending += chunk
                if len(pending) >= CHUNK:
                    await self._append(partial, pending)
                    pending.clear()
            await self._append(partial, pending)
            blob_id = blob_id_for(digest.digest())
            async with self._client.pipeline(transaction=True) as pipe:
                # redis-py refuses pipe.rename() on a cluster pipeline, as the two keys of a
                # RENAME may lie in different slots; these share the account's hash tag, so the
                # command itself is valid on a cluster (it would fail with CROSSSLOT otherwise).
                pipe.execute_command("RENAME", partial, keys.upload(blob_id))
                pipe.expire(keys.upload(blob_id), self._ttl)
                await pipe.execute()
        except BaseException:
            await self._client.delete(partial)
            raise
        return StoredBlob(blob_id, size)

    async def _append(self, key: str, data: bytearray) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.append(key, bytes(data))
            pipe.expire(key, self._ttl)
            await pipe.execute()

    async def size(self, account_id: str, blob_id: str) -> int | None:
        """The blob's size, or None when this account has no such upload."""
        key = AccountKeys(account_id).upload(blob_id)
        if not blob_id.startswith(BLOB_PREFIX) or not await self._client.exists(key):
            return None
        return int(await self._client.strlen(key))

    async def read(self, account_id: str, blob_id: str, size: int) -> AsyncIterator[bytes]:
        """The blob's octets in chunks, so a large download is never held whole."""
        key = AccountKeys(account_id).upload(blob_id)
        for start in range(0, size, CHUNK):
            chunk = await self._client.getrange(key, start, min(start + CHUNK, size) - 1)
            yield chunk if isinstance(chunk, bytes) else chunk.encode()
