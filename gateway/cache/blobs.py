"""Uploaded blobs (RFC 8620 6.1), kept in Redis where every replica can read them.

An upload is appended to a partial key as it arrives, in chunks of :data:`CHUNK` octets, so a
gateway process holds little of it in memory, and renamed to its final key once complete. Keys
carry the uploader's account hash tag: another account cannot name them.

The blob id is a keyed digest of the content, with a key of the account's own derived from the
server secret: the same octets uploaded twice by one account are stored once, while the id
says nothing about another account's uploads (an unkeyed hash would let anyone who knows a
document's octets tell that some account uploaded it).

Each account has an upload quota in Redis, across replicas: every chunk is charged before it
is stored, by one Lua script that also stores it, so replicas cannot overshoot together. The
charges live beside the blobs, in a sorted set of member -> expiry and a hash of member ->
octets (with the total under ``*``); members that expired are dropped, with their keys, by the
next script to run, so the count never outlives the data. RFC 8620 6: when an upload would take
the account over quota, the oldest unused uploads are deleted, oldest first, until it fits;
uploads still arriving are never deleted, and an upload that finds the quota taken by them is
refused. Unreferenced uploads otherwise expire, never before an hour has passed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.cache.keys import AccountKeys
from gateway.cache.store import SecretSource

CHUNK = 1024 * 1024
BLOB_PREFIX = "U"
_DIGEST_BYTES = 20
# Charged to the quota for each upload besides its octets: what its key, its sorted-set member
# and its hash field take in Redis, so that a flood of tiny uploads is bounded too.
UPLOAD_OVERHEAD = 512
_KEY_LABEL = b"jmap-gateway upload blob ids\x00"

# Every script starts here. KEYS[1]: the account's sorted set of member -> expiry (ms);
# KEYS[2]: its hash of member -> octets charged, total under "*". ARGV[1]: the prefix that makes
# a member ("upload:<blobId>", "partial:<token>") its key. Forgets up to 100 expired members.
_PRELUDE = """
local zset, sizes, prefix = KEYS[1], KEYS[2], ARGV[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- Numbers reach Redis as text: written as integers, never "-0" or "1e+14".
local function int(n)
  return string.format('%d', n)
end
local function forget(member)
  local charged = tonumber(redis.call('HGET', sizes, member) or '0')
  redis.call('HINCRBY', sizes, '*', int(0 - charged))
  redis.call('HDEL', sizes, member)
  redis.call('ZREM', zset, member)
  redis.call('DEL', prefix .. member)
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'LIMIT', 0, 100)) do
  forget(member)
end
local function keep(member, ttl)
  redis.call('ZADD', zset, int(now + ttl), member)
  redis.call('PEXPIRE', zset, int(ttl))
  redis.call('PEXPIRE', sizes, int(ttl))
end
"""

# KEYS[3]: the partial key. ARGV: 2 its member, 3 the octets, 4 the quota, 5 the expiry (ms),
# 6 the overhead charged with the first chunk, 7 "1" for the first chunk. Returns 1 when stored,
# 0 when over quota, -1 when the partial upload expired meanwhile.
_APPEND = (
    _PRELUDE
    + """
local member, data = ARGV[2], ARGV[3]
local quota, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
if ARGV[7] ~= '1' and redis.call('EXISTS', KEYS[3]) == 0 then
  return -1
end
local need = #data + tonumber(ARGV[6])
local total = tonumber(redis.call('HGET', sizes, '*') or '0')
local arriving = 0
while total + need > quota do
  local oldest = redis.call('ZRANGE', zset, arriving, arriving + 99)
  if #oldest == 0 then
    return 0
  end
  for _, other in ipairs(oldest) do
    if total + need <= quota then
      break
    end
    if string.sub(other, 1, 8) == 'partial:' then
      arriving = arriving + 1
    else
      total = total - tonumber(redis.call('HGET', sizes, other) or '0')
      forget(other)
    end
  end
end
redis.call('APPEND', KEYS[3], data)
redis.call('PEXPIRE', KEYS[3], int(ttl))
redis.call('HINCRBY', sizes, member, int(need))
redis.call('HINCRBY', sizes, '*', int(need))
keep(member, ttl)
return 1
"""
)

# KEYS[3]: the partial key, KEYS[4]: the upload's key. ARGV: 2 the partial's member, 3 the
# upload's member, 4 the expiry (ms). The same octets uploaded before are replaced (and no
# longer charged twice), and their expiry starts again (RFC 8620 6.1 SHOULD). Returns 0 if
# the partial upload expired meanwhile.
_COMMIT = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[3]) == 0 then
  return 0
end
local ttl = tonumber(ARGV[4])
local charged = tonumber(redis.call('HGET', sizes, ARGV[2]) or '0')
local previous = tonumber(redis.call('HGET', sizes, ARGV[3]) or '0')
redis.call('RENAME', KEYS[3], KEYS[4])
redis.call('PEXPIRE', KEYS[4], int(ttl))
redis.call('HINCRBY', sizes, '*', int(0 - previous))
redis.call('HDEL', sizes, ARGV[2])
redis.call('ZREM', zset, ARGV[2])
redis.call('HSET', sizes, ARGV[3], int(charged))
keep(ARGV[3], ttl)
return 1
"""
)

# KEYS[3]: the partial key. ARGV[2]: its member. A failed upload leaves nothing charged.
_ABORT = (
    _PRELUDE
    + """
forget(ARGV[2])
return 1
"""
)


class BlobTooLarge(Exception):
    """The upload passed the size limit; nothing was kept."""


class UploadQuotaFull(Exception):
    """The account's uploads still arriving leave no room for this one; nothing was kept."""


class UploadExpired(Exception):
    """The upload took longer than uploads are kept; nothing was kept."""


class BlobVanished(LookupError):
    """The upload expired, or made room for newer ones, while it was being read."""


@dataclass(frozen=True)
class StoredBlob:
    blob_id: str
    size: int


def blob_id_for(digest: bytes) -> str:
    return BLOB_PREFIX + base64.b32encode(digest[:_DIGEST_BYTES]).decode().lower()


class BlobStore:
    def __init__(
        self,
        client: Redis | RedisCluster,
        ttl_seconds: int,
        *,
        secret: SecretSource,
        quota: int,
    ) -> None:
        self._client = client
        self._ttl_ms = ttl_seconds * 1000
        self._secret = secret
        self.quota = quota
        # EVALSHA: the scripts' text is sent once.
        self._append_script = client.register_script(_APPEND)
        self._commit_script = client.register_script(_COMMIT)
        self._abort_script = client.register_script(_ABORT)

    async def _account_key(self, account_id: str) -> bytes:
        # The server secret is asked each time: without GATEWAY_SECRET it lives in Redis, and
        # every replica must name one upload the same way.
        secret = await self._secret()
        return hmac.digest(secret, _KEY_LABEL + account_id.encode(), hashlib.sha256)

    async def put(self, account_id: str, body: AsyncIterable[bytes], max_size: int) -> StoredBlob:
        """Store ``body``; raise BlobTooLarge as soon as it passes ``max_size`` octets, and
        UploadQuotaFull when it cannot be charged to the account's quota."""
        keys = AccountKeys(account_id)
        upload = _Upload(keys, secrets.token_hex(8))
        mac = hmac.new(await self._account_key(account_id), digestmod=hashlib.sha256)
        size = 0
        pending = bytearray()
        try:
            async for chunk in body:
                size += len(chunk)
                if size > max_size:
                    raise BlobTooLarge(f"larger than {max_size} octets")
                mac.update(chunk)
                pending += chunk
                if len(pending) >= CHUNK:
                    await self._append(upload, pending)
                    pending.clear()
            await self._append(upload, pending)
            blob_id = blob_id_for(mac.digest())
            committed = await self._commit_script(
                keys=[keys.uploads, keys.upload_charges, upload.key, keys.upload(blob_id)],
                args=[upload.prefix, upload.member, _member_of(blob_id), self._ttl_ms],
            )
            if not committed:
                raise UploadExpired("the upload took longer than uploads are kept")
        except BaseException:
            await self._abort_script(
                keys=[keys.uploads, keys.upload_charges, upload.key],
                args=[upload.prefix, upload.member],
            )
            raise
        return StoredBlob(blob_id, size)

    async def _append(self, upload: _Upload, data: bytearray) -> None:
        keys = upload.keys
        stored = await self._append_script(
            keys=[keys.uploads, keys.upload_charges, upload.key],
            args=[
                upload.prefix,
                upload.member,
                bytes(data),
                self.quota,
                self._ttl_ms,
                0 if upload.started else UPLOAD_OVERHEAD,
                0 if upload.started else 1,
            ],
        )
        if stored == 0:
            raise UploadQuotaFull(f"uploads still arriving fill the quota of {self.quota}")
        if stored < 0:
            raise UploadExpired("the upload took longer than uploads are kept")
        upload.started = True

    async def charged(self, account_id: str) -> int:
        """Octets charged to the account's quota now."""
        total = await self._client.hget(AccountKeys(account_id).upload_charges, "*")
        return int(total or 0)

    async def size(self, account_id: str, blob_id: str) -> int | None:
        """The blob's size, or None when this account has no such upload."""
        key = AccountKeys(account_id).upload(blob_id)
        if not blob_id.startswith(BLOB_PREFIX) or not await self._client.exists(key):
            return None
        return int(await self._client.strlen(key))

    async def read(self, account_id: str, blob_id: str, size: int) -> AsyncIterator[bytes]:
        """The blob's octets in chunks, so a large download is never held whole.

        Raises BlobVanished if the upload is gone before its last octet was read (an upload
        never changes while it exists: a short read means it expired or was evicted)."""
        key = AccountKeys(account_id).upload(blob_id)
        for start in range(0, size, CHUNK):
            chunk = await self._client.getrange(key, start, min(start + CHUNK, size) - 1)
            data = chunk if isinstance(chunk, bytes) else chunk.encode()
            if len(data) != min(CHUNK, size - start):
                raise BlobVanished(blob_id)
            yield data


@dataclass
class _Upload:
    """One upload arriving: its partial key and the member that charges it."""

    keys: AccountKeys
    token: str
    started: bool = False

    @property
    def key(self) -> str:
        return self.keys.partial(self.token)

    @property
    def member(self) -> str:
        return f"partial:{self.token}"

    @property
    def prefix(self) -> str:
        return self.keys.base + ":"


def _member_of(blob_id: str) -> str:
    return f"upload:{blob_id}"
