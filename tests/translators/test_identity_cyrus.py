"""Identities kept in Cyrus IMAP 3.6's METADATA (RFC 5464), the second upstream that has it:
created, changed and destroyed through the gateway, witnessed with a plain imaplib
GETMETADATA, and read back after Redis lost everything."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.cyrus import Cyrus
from tests.jmapclient import Jmap
from tests.translators.identities import (
    flush_redis,
    identities,
    metadata_entries,
    sending_gateway,
)
from tests.translators.submitting import submission_client


@pytest.fixture
async def http(cyrus: Cyrus, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        sending_gateway(cyrus.url, redis_url) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


@pytest.fixture
async def jmap(cyrus: Cyrus, http: httpx.AsyncClient) -> Jmap:
    user = cyrus.fresh_user()
    return await submission_client(http, user, cyrus.users[user])


async def test_identities_in_cyrus_metadata_survive_the_loss_of_redis(
    jmap: Jmap, cyrus: Cyrus, redis_url: str
) -> None:
    (default,) = (await identities(jmap)).values()
    assert default["email"] == f"{jmap.username}@example.com"
    created = await jmap.call(
        "Identity/set",
        create={"c": {"email": f"{jmap.username}+c@example.com", "name": "Cyrus"}},
        update={default["id"]: {"textSignature": "-- \nme"}},
    )
    new_id = created["created"]["c"]["id"]
    assert created["updated"] == {default["id"]: None}
    entries = metadata_entries(cyrus, jmap.username)
    assert set(entries) == {new_id, default["id"]}
    assert entries[new_id]["name"] == "Cyrus"
    assert entries[default["id"]]["textSignature"] == "-- \nme"

    before = await identities(jmap)
    flush_redis(redis_url)
    assert await identities(jmap) == before

    destroyed = await jmap.call("Identity/set", destroy=[new_id])
    assert destroyed["destroyed"] == [new_id]
    assert set(metadata_entries(cyrus, jmap.username)) == {default["id"]}
    flush_redis(redis_url)
    assert set(await identities(jmap)) == {default["id"]}
