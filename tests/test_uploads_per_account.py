"""Uploads through a running gateway are the account's own: ids keyed per account, octets
within the account's quota.

Found: an upload's blob id was the same unkeyed SHA-256 of its content in every account, so it
told anyone who knew a document's octets whether an account had uploaded it; and nothing
bounded what one account could keep in Redis.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator

import httpx
import redis

from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import Jmap
from tests.servers import Dovecot

MIB = 1024 * 1024


async def upload(jmap: Jmap, data: bytes) -> httpx.Response:
    return await jmap.http.post(f"/jmap/upload/{jmap.account_id}/", content=data, auth=jmap.auth)


async def download(jmap: Jmap, blob_id: str) -> httpx.Response:
    return await jmap.http.get(f"/jmap/download/{jmap.account_id}/{blob_id}/x", auth=jmap.auth)


async def partial_stored(redis_url: str, size: int) -> None:
    """Wait until an upload still arriving has ``size`` octets in Redis."""
    plain = redis.Redis.from_url(redis_url)
    try:
        for _ in range(200):
            if any(plain.strlen(k) >= size for k in plain.scan_iter(match="jg:*:partial:*")):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the first part of the upload never reached Redis")
    finally:
        plain.close()


async def test_the_same_octets_get_other_ids_in_other_accounts(
    dovecot: Dovecot, http: httpx.AsyncClient, redis_url: str
) -> None:
    users = [dovecot.fresh_user() for _ in range(2)]
    one, two = [await Jmap(http, u, dovecot.users[u]).start() for u in users]
    data = b"From: a@example.org\r\nSubject: the same octets\r\n\r\nhello\r\n"
    first, second = (await upload(one, data)).json(), (await upload(two, data)).json()
    assert first["blobId"] != second["blobId"]
    unkeyed = "U" + base64.b32encode(hashlib.sha256(data).digest()[:20]).decode().lower()
    assert unkeyed not in (first["blobId"], second["blobId"])
    # Each id names nothing in the other account: not to download, not to import.
    assert (await download(two, first["blobId"])).status_code == 404
    assert (await download(one, second["blobId"])).status_code == 404
    inbox = (await two.mailboxes())["Inbox"]["id"]
    imported = await two.call(
        "Email/import", emails={"i": {"blobId": first["blobId"], "mailboxIds": {inbox: True}}}
    )
    assert imported["notCreated"]["i"]["properties"] == ["blobId"]
    assert (await download(one, first["blobId"])).content == data
    # Stable for the account: again, and from another replica sharing the Redis.
    assert (await upload(one, data)).json()["blobId"] == first["blobId"]
    async with (
        running_gateway(gateway_settings(dovecot.url, redis_url)) as url,
        httpx.AsyncClient(base_url=url) as other_http,
    ):
        again = await Jmap(other_http, users[0], dovecot.users[users[0]]).start()
        assert (await upload(again, data)).json()["blobId"] == first["blobId"]


async def test_the_quota_evicts_the_oldest_and_refuses_what_cannot_fit(
    dovecot: Dovecot, redis_url: str
) -> None:
    settings = gateway_settings(
        dovecot.url,
        redis_url,
        max_size_upload=2 * MIB,
        max_size_attachments_per_email=MIB,
        upload_quota=3 * MIB,
    )
    user = dovecot.fresh_user()
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        jmap = await Jmap(http, user, dovecot.users[user]).start()
        ids = []
        for index in range(10):
            response = await upload(jmap, bytes([index]) * MIB)
            assert response.status_code == 201
            ids.append(response.json()["blobId"])
        # RFC 8620 6: the oldest went to make room; the newest two fit (with their keys).
        assert [(await download(jmap, i)).status_code for i in ids] == [404] * 8 + [200] * 2
        plain = redis.Redis.from_url(redis_url)
        try:
            kept = [plain.strlen(k) for k in plain.scan_iter(match="jg:*:upload:*")]
        finally:
            plain.close()
        assert kept == [MIB, MIB]

        gate = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b"a" * MIB  # stored at once: a whole chunk
            await gate.wait()
            yield b"b"

        arriving = asyncio.create_task(
            http.post(f"/jmap/upload/{jmap.account_id}/", content=slow(), auth=jmap.auth)
        )
        await partial_stored(redis_url, MIB)
        refused = await upload(jmap, b"c" * 2 * MIB)
        gate.set()
        assert (await arriving).status_code == 201
    assert refused.status_code == 413
    assert refused.json()["type"] == "urn:ietf:params:jmap:error:limit"
    assert refused.json()["limit"] == "uploadQuota"
