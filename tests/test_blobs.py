"""Upload and download of blobs (RFC 8620 6.1, 6.2) through a running gateway."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import redis

from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot

MAIL = "urn:ietf:params:jmap:mail"


async def account(http: httpx.AsyncClient, auth: httpx.BasicAuth) -> str:
    session = (await http.get("/jmap/session", auth=auth)).json()
    return str(session["primaryAccounts"][MAIL])


async def test_upload_then_download(http: httpx.AsyncClient, alice: httpx.BasicAuth) -> None:
    account_id = await account(http, alice)
    data = bytes(range(256)) * 5000  # 1.28 MB, more than one storage chunk
    response = await http.post(
        f"/jmap/upload/{account_id}/",
        content=data,
        auth=alice,
        headers={"content-type": "image/png"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["accountId"] == account_id
    assert body["type"] == "image/png"
    assert body["size"] == len(data)
    blob_id = body["blobId"]
    download = await http.get(
        f"/jmap/download/{account_id}/{blob_id}/Grüße.png",
        params={"accept": "image/png"},
        auth=alice,
    )
    assert download.status_code == 200
    assert download.content == data
    assert hashlib.sha256(download.content).digest() == hashlib.sha256(data).digest()
    assert download.headers["content-type"] == "image/png"
    assert download.headers["content-disposition"] == (
        "attachment; filename=\"Gr__e.png\"; filename*=UTF-8''Gr%C3%BC%C3%9Fe.png"
    )


async def test_same_content_same_blob(http: httpx.AsyncClient, alice: httpx.BasicAuth) -> None:
    account_id = await account(http, alice)
    ids = set()
    for media_type in ("text/plain", "application/octet-stream"):
        response = await http.post(
            f"/jmap/upload/{account_id}/",
            content=b"hello",
            auth=alice,
            headers={"content-type": media_type},
        )
        ids.add(response.json()["blobId"])
    assert len(ids) == 1


async def test_empty_upload(http: httpx.AsyncClient, alice: httpx.BasicAuth) -> None:
    account_id = await account(http, alice)
    response = await http.post(f"/jmap/upload/{account_id}/", content=b"", auth=alice)
    assert response.status_code == 201 and response.json()["size"] == 0
    assert response.json()["type"] == "application/octet-stream"


async def test_other_users_cannot_upload_or_download(
    http: httpx.AsyncClient, alice: httpx.BasicAuth, bob: httpx.BasicAuth
) -> None:
    alices = await account(http, alice)
    blob_id = (await http.post(f"/jmap/upload/{alices}/", content=b"private", auth=alice)).json()[
        "blobId"
    ]
    stolen = await http.get(f"/jmap/download/{alices}/{blob_id}/x", auth=bob)
    assert stolen.status_code == 404
    bobs = await account(http, bob)
    # The same blob id in bob's own account does not exist either.
    assert (await http.get(f"/jmap/download/{bobs}/{blob_id}/x", auth=bob)).status_code == 404
    assert (await http.post(f"/jmap/upload/{alices}/", content=b"x", auth=bob)).status_code == 404
    assert (await http.get(f"/jmap/download/{alices}/{blob_id}/x")).status_code == 401


async def test_unknown_blob_and_bad_accept(http: httpx.AsyncClient, alice: httpx.BasicAuth) -> None:
    account_id = await account(http, alice)
    missing = await http.get(f"/jmap/download/{account_id}/Unothere/x", auth=alice)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    blob_id = (await http.post(f"/jmap/upload/{account_id}/", content=b"x", auth=alice)).json()[
        "blobId"
    ]
    bad = await http.get(
        f"/jmap/download/{account_id}/{blob_id}/x",
        params={"accept": "text/html\r\nSet-Cookie: a=b"},
        auth=alice,
    )
    assert bad.status_code == 400


async def test_upload_over_max_size(dovecot: Dovecot, redis_url: str) -> None:
    settings = gateway_settings(dovecot.url, redis_url, max_size_upload=100_000)
    auth = httpx.BasicAuth("alice", dovecot.users["alice"])
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        account_id = await account(http, auth)
        declared = await http.post(f"/jmap/upload/{account_id}/", content=b"x" * 100_001, auth=auth)
        assert declared.status_code == 413
        assert declared.json()["limit"] == "maxSizeUpload"

        async def stream() -> AsyncIterator[bytes]:
            for _ in range(50):
                yield b"y" * 10_000

        streamed = await http.post(f"/jmap/upload/{account_id}/", content=stream(), auth=auth)
        assert streamed.status_code == 413
        exact = await http.post(f"/jmap/upload/{account_id}/", content=b"z" * 100_000, auth=auth)
        assert exact.status_code == 201
    # Nothing of the refused uploads is left behind.
    client = redis.Redis.from_url(redis_url)
    assert not client.keys("*partial*")
    assert len(client.keys("*:upload:*")) == 1
    client.close()


async def test_concurrent_uploads_over_the_limit(dovecot: Dovecot, redis_url: str) -> None:
    settings = gateway_settings(dovecot.url, redis_url, max_concurrent_upload=1)
    auth = httpx.BasicAuth("alice", dovecot.users["alice"])
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        account_id = await account(http, auth)
        gate = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b"first part"
            await gate.wait()
            yield b"last part"

        first = asyncio.create_task(
            http.post(f"/jmap/upload/{account_id}/", content=slow(), auth=auth)
        )
        await asyncio.sleep(0.3)
        second = await http.post(f"/jmap/upload/{account_id}/", content=b"x", auth=auth)
        gate.set()
        assert (await first).status_code == 201
        assert second.status_code == 429
        assert json.loads(second.content)["limit"] == "maxConcurrentUpload"


@pytest.mark.parametrize("media_type", ["text", "image/png extra", "/plain", "text/plain; charset"])
async def test_upload_with_bad_content_type(
    http: httpx.AsyncClient, alice: httpx.BasicAuth, media_type: str
) -> None:
    account_id = await account(http, alice)
    response = await http.post(
        f"/jmap/upload/{account_id}/",
        content=b"x",
        auth=alice,
        headers={"content-type": media_type},
    )
    assert response.status_code == 400
