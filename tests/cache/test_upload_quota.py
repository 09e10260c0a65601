"""The upload quota per account against a real Redis.

Found: 40 uploads of 1 MiB added 54 MB to Redis in half a second, with nothing to stop the
next 4,000. Now every account's uploads are charged (octets plus UPLOAD_OVERHEAD each) before
they are stored, by the script that stores them, and RFC 8620 6 is followed when an upload
would go over: the oldest unused uploads are deleted until it fits. The ground truth is Redis
itself: the keys that exist and their lengths, read with a plain client.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from gateway.cache.blobs import (
    CHUNK,
    UPLOAD_OVERHEAD,
    BlobStore,
    BlobVanished,
    UploadExpired,
    UploadQuotaFull,
)
from gateway.cache.keys import AccountKeys
from gateway.cache.store import Store, fixed_secret

MIB = 1024 * 1024


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    running = Store.from_url(redis_url)
    yield running
    await running.close()


@pytest.fixture
def plain(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def blobs(store: Store, quota: int, ttl: int = 3600) -> BlobStore:
    return BlobStore(store.client, ttl, secret=fixed_secret(b"s" * 32), quota=quota)


async def body(data: bytes, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


def held(plain: redis.Redis, account: str) -> dict[str, int]:
    """Upload key -> octets, of every upload and partial upload the account has in Redis."""
    base = AccountKeys(account).base
    found = {}
    for pattern in (f"{base}:upload:*", f"{base}:partial:*"):
        for key in plain.scan_iter(match=pattern.replace("{", "\\{").replace("}", "\\}")):
            found[key.decode()] = int(plain.strlen(key))
    return found


async def test_the_oldest_uploads_make_room(store: Store, plain: redis.Redis) -> None:
    account = "a" + secrets.token_hex(4)
    quota = 5 * MIB
    uploads = blobs(store, quota)
    ids = []
    for _ in range(40):  # what filled Redis with 54 MB before
        ids.append((await uploads.put(account, body(secrets.token_bytes(MIB)), 50 * MIB)).blob_id)
        kept = held(plain, account)
        assert sum(kept.values()) + len(kept) * UPLOAD_OVERHEAD <= quota
    kept = held(plain, account)
    assert len(kept) == 4  # 4 MiB and 4 overheads fit in 5 MiB, a fifth MiB does not
    assert await uploads.charged(account) == 4 * (MIB + UPLOAD_OVERHEAD)
    # Oldest first (RFC 8620 6): the last four are there, every other one is gone.
    assert {AccountKeys(account).upload(i) for i in ids[-4:]} == set(kept)
    assert all([await uploads.size(account, i) is None for i in ids[:-4]])


async def test_a_flood_of_tiny_uploads_is_bounded_by_their_keys(
    store: Store, plain: redis.Redis
) -> None:
    account = "a" + secrets.token_hex(4)
    quota = 100 * UPLOAD_OVERHEAD
    uploads = blobs(store, quota)
    for index in range(500):
        await uploads.put(account, body(index.to_bytes(4, "big")), 1000)
    assert len(held(plain, account)) == quota // (4 + UPLOAD_OVERHEAD) == 99
    assert plain.zcard(AccountKeys(account).uploads) == 99


async def test_uploads_still_arriving_are_never_evicted(store: Store, plain: redis.Redis) -> None:
    """Their room is kept; an upload that then cannot fit is refused, and leaves nothing."""
    account = "a" + secrets.token_hex(4)
    uploads = blobs(store, 3 * MIB)
    old = await uploads.put(account, body(secrets.token_bytes(MIB // 2)), 50 * MIB)
    halfway = asyncio.Event()
    finish = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield secrets.token_bytes(2 * CHUNK)  # stored at once: a whole chunk
        halfway.set()
        await finish.wait()
        yield b"end"

    arriving = asyncio.create_task(uploads.put(account, slow(), 50 * MIB))
    await halfway.wait()
    await asyncio.sleep(0.05)
    with pytest.raises(UploadQuotaFull):
        await uploads.put(account, body(secrets.token_bytes(MIB + 1)), 50 * MIB)
    # The old upload made room as far as it could; the one arriving kept its octets.
    assert await uploads.size(account, old.blob_id) is None
    finish.set()
    done = await arriving
    assert await uploads.size(account, done.blob_id) == 2 * CHUNK + 3
    assert held(plain, account) == {AccountKeys(account).upload(done.blob_id): 2 * CHUNK + 3}
    assert await uploads.charged(account) == 2 * CHUNK + 3 + UPLOAD_OVERHEAD


async def test_replicas_charge_one_quota(store: Store, redis_url: str, plain: redis.Redis) -> None:
    """Two processes' stores uploading at once for one account (four at a time, as
    maxConcurrentUpload admits) stay within one quota, and the charges always add up to what
    Redis holds."""
    account = "a" + secrets.token_hex(4)
    other = Store.from_url(redis_url)
    admitted = asyncio.Semaphore(4)
    try:
        quota = 6 * MIB
        replicas = [blobs(store, quota), blobs(other, quota)]

        async def upload(index: int) -> None:
            data = secrets.token_bytes(MIB + index)
            async with admitted:
                await replicas[index % 2].put(account, body(data, 200_000), 50 * MIB)

        await asyncio.gather(*(upload(i) for i in range(24)))
    finally:
        await other.close()
    kept = held(plain, account)
    assert sum(kept.values()) + len(kept) * UPLOAD_OVERHEAD <= quota
    assert await replicas[0].charged(account) == sum(kept.values()) + len(kept) * UPLOAD_OVERHEAD
    assert plain.hlen(AccountKeys(account).upload_charges) == len(kept) + 1  # and the total


async def test_expired_uploads_are_no_longer_charged(store: Store, plain: redis.Redis) -> None:
    account = "a" + secrets.token_hex(4)
    uploads = blobs(store, 3 * MIB, ttl=1)
    first = await uploads.put(account, body(b"x" * 1000), MIB)
    await asyncio.sleep(1.2)  # the key expired in Redis; its charge is dropped by the next script
    assert held(plain, account) == {}
    second = await uploads.put(account, body(b"y" * 10), MIB)
    assert await uploads.charged(account) == 10 + UPLOAD_OVERHEAD
    assert plain.zrange(AccountKeys(account).uploads, 0, -1) == [
        f"upload:{second.blob_id}".encode()
    ]
    assert first.blob_id != second.blob_id


async def test_the_same_octets_are_stored_and_charged_once(
    store: Store, plain: redis.Redis
) -> None:
    account = "a" + secrets.token_hex(4)
    uploads = blobs(store, 3 * MIB)
    data = secrets.token_bytes(100_000)
    ids = {(await uploads.put(account, body(data), MIB)).blob_id for _ in range(3)}
    assert len(ids) == 1
    assert await uploads.charged(account) == len(data) + UPLOAD_OVERHEAD
    assert len(held(plain, account)) == 1


async def test_an_upload_evicted_while_read_is_never_half_read(store: Store) -> None:
    account = "a" + secrets.token_hex(4)
    uploads = blobs(store, 3 * MIB + 2 * UPLOAD_OVERHEAD)
    data = secrets.token_bytes(2 * CHUNK)
    old = await uploads.put(account, body(data), 50 * MIB)
    reading = uploads.read(account, old.blob_id, old.size)
    assert await anext(reading) == data[:CHUNK]
    await uploads.put(account, body(secrets.token_bytes(2 * MIB)), 50 * MIB)
    with pytest.raises(BlobVanished):
        await anext(reading)


async def test_an_upload_slower_than_uploads_are_kept_is_refused_whole(
    store: Store, plain: redis.Redis
) -> None:
    """Its first chunk expired (and went from the count) before the rest came: appending the
    rest would store a blob with its start missing."""
    account = "a" + secrets.token_hex(4)
    uploads = blobs(store, 3 * MIB, ttl=1)

    async def slow() -> AsyncIterator[bytes]:
        yield b"a" * CHUNK
        await asyncio.sleep(1.3)
        yield b"b" * CHUNK

    with pytest.raises(UploadExpired):
        await uploads.put(account, slow(), 50 * MIB)
    assert held(plain, account) == {}
    assert await uploads.charged(account) == 0
