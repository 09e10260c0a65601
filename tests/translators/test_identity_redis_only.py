"""Identities on an upstream without METADATA (the shared test Dovecot has it off): Redis is
their only copy. What the user created is lost with Redis; the default identity is always
there, recomputed from the login."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.identities import flush_redis, identities, sending_gateway
from tests.translators.submitting import submission_client


@pytest.fixture
async def http(dovecot: Dovecot, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        sending_gateway(dovecot.url, redis_url) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


@pytest.fixture
async def jmap(dovecot: Dovecot, http: httpx.AsyncClient) -> Jmap:
    user = dovecot.fresh_user()
    return await submission_client(http, user, dovecot.users[user])


async def test_without_metadata_identities_live_in_redis_only(jmap: Jmap, redis_url: str) -> None:
    (default,) = (await identities(jmap)).values()
    assert default["email"] == f"{jmap.username}@example.com"
    created = await jmap.call(
        "Identity/set", create={"c": {"email": f"{jmap.username}+r@example.com", "name": "R"}}
    )
    new_id = created["created"]["c"]["id"]
    assert (await identities(jmap))[new_id]["name"] == "R"
    changes = await jmap.call("Identity/changes", sinceState=created["oldState"])
    assert changes["created"] == [new_id]

    flush_redis(redis_url)
    assert await identities(jmap) == {default["id"]: default}


async def test_a_login_without_an_address_and_no_mail_domain_has_no_identity(
    dovecot: Dovecot, redis_url: str
) -> None:
    async with (
        sending_gateway(dovecot.url, redis_url, mail_domain=None) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        user = dovecot.fresh_user()
        jmap = await submission_client(http, user, dovecot.users[user])
        assert await identities(jmap) == {}
        # {address} and its parts name nobody: the policy allows this user nothing.
        refused = await jmap.call("Identity/set", create={"c": {"email": f"{user}@example.com"}})
        assert refused["notCreated"]["c"]["type"] == "forbiddenFrom"


async def test_a_login_that_is_an_address_is_the_default_identity(
    dovecot: Dovecot, redis_url: str
) -> None:
    async with (
        sending_gateway(dovecot.url, redis_url, mail_domain=None) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        user = dovecot.fresh_user()
        # Dovecot's passdb takes the part before @ (username_format=%n).
        jmap = await submission_client(http, f"{user}@Elsewhere.Example", dovecot.users[user])
        (identity,) = (await identities(jmap)).values()
        assert identity["email"] == f"{user}@elsewhere.example"
