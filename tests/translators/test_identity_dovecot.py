"""Identity/get, /set and /changes (RFC 8621 6) against a Dovecot with METADATA (RFC 5464).

Each identity is one private server entry; a plain imaplib GETMETADATA is the witness of
what Dovecot holds, and after Redis lost everything the identities come back from there.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio

from gateway.translators.identity.stored import MAX_ENTRIES_READ
from tests.conftest import serving
from tests.faultproxy import FaultProxy
from tests.jmapclient import SUBMISSION, Jmap
from tests.rediscluster import RedisClusterSet
from tests.servers import Dovecot, make_data_dir
from tests.translators.identities import (
    flush_redis,
    identities,
    metadata_entries,
    sending_gateway,
    state,
    write_entries,
    write_entry,
)
from tests.translators.submitting import submission_client


@pytest.fixture(scope="module")
def metadata_dovecot() -> Iterator[Dovecot]:
    yield from serving(Dovecot(make_data_dir("jg-dovecot-"), metadata=True))


@pytest.fixture
async def http(metadata_dovecot: Dovecot, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        sending_gateway(metadata_dovecot.url, redis_url) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


@pytest.fixture
async def jmap(metadata_dovecot: Dovecot, http: httpx.AsyncClient) -> Jmap:
    user = metadata_dovecot.fresh_user()
    return await submission_client(http, user, metadata_dovecot.users[user])


def own_id(address: str) -> str:
    """The default identity's id, computed outside the gateway from its documented rule."""
    digest = hashlib.sha256(b"identity\0" + address.encode()).digest()[:10]
    return "i" + base64.b32encode(digest).decode().rstrip("=").lower()


async def create(jmap: Jmap, **props: Any) -> dict[str, Any]:
    return await jmap.call("Identity/set", create={"c": props})


async def test_every_account_has_its_own_address_with_the_smtp_server_down(
    jmap: Jmap, http: httpx.AsyncClient
) -> None:
    session = (await http.get("/jmap/session", auth=jmap.auth)).json()
    assert SUBMISSION in session["capabilities"]
    assert SUBMISSION in session["accounts"][jmap.account_id]["accountCapabilities"]
    address = f"{jmap.username}@example.com"
    assert await identities(jmap) == {
        own_id(address): {
            "id": own_id(address),
            "name": "",
            "email": address,
            "replyTo": None,
            "bcc": None,
            "textSignature": "",
            "htmlSignature": "",
            "mayDelete": False,
        }
    }


async def test_identity_methods_need_the_submission_capability(jmap: Jmap) -> None:
    jmap.using = jmap.using[:2]
    (response,) = await jmap.request(("Identity/get", {"ids": None}))
    assert response[0] == "error"
    assert response[1]["type"] == "unknownMethod"


async def test_create_update_destroy_kept_in_one_metadata_entry_each(
    jmap: Jmap, metadata_dovecot: Dovecot
) -> None:
    before = await state(jmap)
    address = f"{jmap.username}+news@example.com"
    reply_to = [{"name": "Desk", "email": f"{jmap.username}@example.com"}]
    created = await create(jmap, email=address, name="News", replyTo=reply_to)
    new = created["created"]["c"]
    assert new == {
        "id": new["id"],
        "mayDelete": True,
        "bcc": None,
        "textSignature": "",
        "htmlSignature": "",
    }
    assert created["oldState"] == before != created["newState"]
    entries = metadata_entries(metadata_dovecot, jmap.username)
    assert entries == {
        new["id"]: {
            "name": "News",
            "email": address,
            "replyTo": reply_to,
            "bcc": None,
            "textSignature": "",
            "htmlSignature": "",
        }
    }

    updated = await jmap.call(
        "Identity/set",
        update={
            new["id"]: {"textSignature": "-- \nNews", "bcc": [{"name": None, "email": address}]}
        },
    )
    assert updated["updated"] == {new["id"]: None}
    entry = metadata_entries(metadata_dovecot, jmap.username)[new["id"]]
    assert entry["textSignature"] == "-- \nNews"
    assert entry["bcc"] == [{"name": None, "email": address}]
    assert (await identities(jmap))[new["id"]]["textSignature"] == "-- \nNews"

    changes = await jmap.call("Identity/changes", sinceState=before)
    assert changes["created"] == [new["id"]]
    assert changes["updated"] == changes["destroyed"] == []

    destroyed = await jmap.call("Identity/set", destroy=[new["id"]])
    assert destroyed["destroyed"] == [new["id"]]
    assert metadata_entries(metadata_dovecot, jmap.username) == {}
    assert new["id"] not in await identities(jmap)
    after_create = created["newState"]
    changes = await jmap.call("Identity/changes", sinceState=after_create)
    assert changes["destroyed"] == [new["id"]]
    assert changes["created"] == changes["updated"] == []
    # Created and destroyed since the first state: nothing to tell.
    changes = await jmap.call("Identity/changes", sinceState=before)
    assert changes["created"] == changes["updated"] == changes["destroyed"] == []


async def test_addresses_outside_the_policy_are_forbidden_from(
    jmap: Jmap, metadata_dovecot: Dovecot
) -> None:
    for address in (
        "bob@example.com",
        f"{jmap.username}@evil.example",
        f"x{jmap.username}+a@example.com",
    ):
        result = await create(jmap, email=address)
        assert result["notCreated"]["c"]["type"] == "forbiddenFrom", address
    assert metadata_entries(metadata_dovecot, jmap.username) == {}
    assert len(await identities(jmap)) == 1


async def test_the_default_identity_may_change_but_never_go(
    jmap: Jmap, metadata_dovecot: Dovecot
) -> None:
    address = f"{jmap.username}@example.com"
    default = own_id(address)
    refused = await jmap.call("Identity/set", destroy=[default])
    assert refused["notDestroyed"][default]["type"] == "forbidden"
    changed = await jmap.call("Identity/set", update={default: {"name": "Alice A."}})
    assert changed["updated"] == {default: None}
    (identity,) = (await identities(jmap)).values()
    assert identity["name"] == "Alice A."
    assert identity["mayDelete"] is False
    assert identity["email"] == address
    assert metadata_entries(metadata_dovecot, jmap.username)[default]["name"] == "Alice A."
    # Its address is immutable, like every identity's.
    moved = await jmap.call(
        "Identity/set", update={default: {"email": f"{jmap.username}+x@example.com"}}
    )
    assert moved["notUpdated"][default]["type"] == "invalidProperties"
    assert moved["notUpdated"][default]["properties"] == ["email"]
    # The same value, and server-set properties at their values, are no change.
    same = await jmap.call(
        "Identity/set", update={default: {"email": address, "mayDelete": False, "id": default}}
    )
    assert same["updated"] == {default: None}


@pytest.mark.parametrize(
    ("props", "bad"),
    [
        ({}, "email"),
        ({"email": "not an address"}, "email"),
        ({"email": "OWN", "name": "x" * 257}, "name"),
        ({"email": "OWN", "name": "a\r\nBcc: x@y"}, "name"),
        ({"email": "OWN", "replyTo": "x@example.com"}, "replyTo"),
        ({"email": "OWN", "replyTo": [{"email": "x@example.com", "extra": 1}]}, "replyTo"),
        ({"email": "OWN", "bcc": [{"email": "x"}]}, "bcc"),
        ({"email": "OWN", "bcc": [{"email": "a@example.com"}] * 21}, "bcc"),
        ({"email": "OWN", "textSignature": "x" * 40000}, "textSignature"),
        ({"email": "OWN", "htmlSignature": 5}, "htmlSignature"),
        ({"email": "OWN", "mayDelete": False}, "mayDelete"),
        ({"email": "OWN", "id": "n1"}, "id"),
        ({"email": "OWN", "colour": "red"}, "colour"),
        ({"email": "OWN", "replyTo/0": None}, "replyTo/0"),
    ],
)
async def test_invalid_properties(
    jmap: Jmap, metadata_dovecot: Dovecot, props: dict[str, Any], bad: str
) -> None:
    props = {k: (f"{jmap.username}+a@example.com" if v == "OWN" else v) for k, v in props.items()}
    result = await create(jmap, **props)
    error = result["notCreated"]["c"]
    assert error["type"] == "invalidProperties"
    assert error["properties"] == [bad]
    assert metadata_entries(metadata_dovecot, jmap.username) == {}


async def test_redis_lost_everything_the_identities_come_back(
    jmap: Jmap, metadata_dovecot: Dovecot, redis_url: str
) -> None:
    address = f"{jmap.username}@example.com"
    await jmap.call("Identity/set", update={own_id(address): {"htmlSignature": "<b>A</b>"}})
    await create(jmap, email=f"{jmap.username}+one@example.com", name="One")
    before = await identities(jmap)
    old_state = await state(jmap)
    flush_redis(redis_url)
    assert await identities(jmap) == before
    assert set(metadata_entries(metadata_dovecot, jmap.username)) == set(before)
    # A state from before the loss cannot be calculated from; the new one can.
    changed = await jmap.request(("Identity/changes", {"sinceState": old_state}))
    assert changed[0][1]["type"] == "cannotCalculateChanges"
    new_state = await state(jmap)
    assert (await jmap.call("Identity/changes", sinceState=new_state))["created"] == []


async def test_entries_the_gateway_did_not_write_are_left_out(
    jmap: Jmap, metadata_dovecot: Dovecot, redis_url: str
) -> None:
    write_entry(metadata_dovecot, jmap.username, "nbroken", "{not json")
    write_entry(metadata_dovecot, jmap.username, "nforeign", '{"email": "x"}')
    write_entry(
        metadata_dovecot,
        jmap.username,
        "nother",
        f'{{"email": "{jmap.username}+o@example.com", "name": "Other"}}',
    )
    flush_redis(redis_url)
    found = await identities(jmap)
    assert len(found) == 2
    assert found["nother"]["name"] == "Other"
    assert found["nother"]["mayDelete"] is True


async def test_a_read_keeps_a_bounded_number_of_entries(
    jmap: Jmap, metadata_dovecot: Dovecot, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Any IMAP client may write entries under the root, as many as the server allows.
    many = MAX_ENTRIES_READ + 50
    write_entries(
        metadata_dovecot,
        jmap.username,
        {
            f"nmany{n}": json.dumps({"email": f"{jmap.username}+{n}@example.com"})
            for n in range(many)
        },
    )
    assert len(metadata_entries(metadata_dovecot, jmap.username)) == many
    flush_redis(redis_url)
    found = await identities(jmap)
    assert len(found) == MAX_ENTRIES_READ + 1  # the bound, and the computed default identity
    assert f"50 identity entries beyond the first {MAX_ENTRIES_READ} left unread" in caplog.text


async def test_creation_ids_and_if_in_state(jmap: Jmap) -> None:
    current = await state(jmap)
    stale = await jmap.request(
        ("Identity/set", {"ifInState": current + "0", "create": {"c": {"email": "x@example.com"}}})
    )
    assert stale[0][1]["type"] == "stateMismatch"
    responses = await jmap.request(
        (
            "Identity/set",
            {
                "ifInState": current,
                "create": {"c": {"email": f"{jmap.username}+c@example.com"}},
            },
        ),
        ("Identity/set", {"update": {"#c": {"name": "Referenced"}}}),
        ("Identity/set", {"destroy": ["#c"]}),
    )
    created_id = responses[0][1]["created"]["c"]["id"]
    assert responses[1][1]["updated"] == {created_id: None}
    assert responses[2][1]["destroyed"] == [created_id]


async def test_an_account_keeps_a_bounded_number_of_identities(
    jmap: Jmap, metadata_dovecot: Dovecot
) -> None:
    many = {f"c{i}": {"email": f"{jmap.username}+{i}@example.com"} for i in range(101)}
    result = await jmap.call("Identity/set", create=many)
    assert len(result["created"]) == 100
    assert list(result["notCreated"]) == ["c100"]
    assert result["notCreated"]["c100"]["type"] == "overQuota"
    assert len(metadata_entries(metadata_dovecot, jmap.username)) == 100
    assert len(await identities(jmap)) == 101


async def test_another_user_never_reaches_these_identities(
    jmap: Jmap, metadata_dovecot: Dovecot, http: httpx.AsyncClient
) -> None:
    created = await create(jmap, email=f"{jmap.username}+mine@example.com", name="Mine")
    theirs = created["created"]["c"]["id"]
    default = own_id(f"{jmap.username}@example.com")
    other_user = metadata_dovecot.fresh_user()
    other = await submission_client(http, other_user, metadata_dovecot.users[other_user])
    got = await other.call("Identity/get", ids=[theirs, default])
    assert got["list"] == []
    assert sorted(got["notFound"]) == sorted([theirs, default])
    changed = await other.call(
        "Identity/set",
        update={theirs: {"name": "Stolen"}, default: {"name": "Stolen"}},
        destroy=[theirs],
    )
    assert {e["type"] for e in changed["notUpdated"].values()} == {"notFound"}
    assert changed["notDestroyed"][theirs]["type"] == "notFound"
    # Naming the owner's account is refused outright.
    (answer,) = await other.request(("Identity/get", {"accountId": jmap.account_id, "ids": None}))
    assert answer[1]["type"] == "accountNotFound"
    assert (await identities(jmap))[theirs]["name"] == "Mine"
    assert metadata_entries(metadata_dovecot, jmap.username)[theirs]["name"] == "Mine"
    assert metadata_entries(metadata_dovecot, other_user) == {}


async def test_a_refused_metadata_write_changes_nothing(
    jmap: Jmap, metadata_dovecot: Dovecot
) -> None:
    address = f"{jmap.username}@example.com"
    before = await identities(jmap)
    old_state = await state(jmap)
    # Dovecot cannot replace the user's attribute file where a directory stands in its way:
    # SETMETADATA answers NO [SERVERBUG], and leaves its lock file behind.
    home = metadata_dovecot.root / "mail" / jmap.username
    (home / "dovecot-attributes").mkdir()
    created = await jmap.call(
        "Identity/set", create={"c": {"email": f"{jmap.username}+x@example.com"}}
    )
    assert created["notCreated"]["c"]["type"] == "serverFail"
    (home / "dovecot-attributes.lock").unlink()
    updated = await jmap.call("Identity/set", update={own_id(address): {"name": "Changed"}})
    assert updated["notUpdated"][own_id(address)]["type"] == "serverFail"
    assert created["newState"] == updated["newState"] == old_state
    assert await identities(jmap) == before
    (home / "dovecot-attributes.lock").unlink()
    (home / "dovecot-attributes").rmdir()
    # A new session reads the file: nothing was kept. (The imap process that answered NO
    # goes on showing the values it failed to write, in its memory, until it ends.)
    assert metadata_entries(metadata_dovecot, jmap.username) == {}


async def test_a_write_cut_before_its_answer_is_read_back_from_the_server(
    metadata_dovecot: Dovecot, redis_url: str
) -> None:
    user = metadata_dovecot.fresh_user()
    default = own_id(f"{user}@example.com")
    async with (
        FaultProxy("127.0.0.1", metadata_dovecot.imap_port) as proxy,
        sending_gateway(proxy.url, redis_url) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        jmap = await submission_client(http, user, metadata_dovecot.users[user])
        await identities(jmap)
        # Creates go first; the server keeps the update that follows, but the gateway
        # never hears that it did.
        proxy.cut(rb"SETMETADATA .*/identity/i", when="after")
        (answer,) = await jmap.request(
            (
                "Identity/set",
                {
                    "update": {default: {"name": "First"}},
                    "create": {"c": {"email": f"{user}+c@example.com", "name": "Created"}},
                },
            )
        )
        assert proxy.cuts == 1
        # RFC 8620 3.6.2: the create was made, so the client must re-synchronise.
        assert answer[0] == "error"
        assert answer[1]["type"] == "serverPartialFail"
        entries = metadata_entries(metadata_dovecot, user)
        assert {e["name"] for e in entries.values()} == {"First", "Created"}
        found = await identities(jmap)
        assert {i["name"] for i in found.values()} == {"First", "Created"}
        assert set(found) == set(entries)


async def test_a_cache_write_failing_after_the_server_kept_it_is_read_back(
    metadata_dovecot: Dovecot, redis_url: str
) -> None:
    user = metadata_dovecot.fresh_user()
    redis_client = redis.asyncio.Redis.from_url(redis_url)
    async with (
        FaultProxy("127.0.0.1", metadata_dovecot.imap_port) as proxy,
        sending_gateway(proxy.url, redis_url) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        jmap = await submission_client(http, user, metadata_dovecot.users[user])
        await identities(jmap)  # the cache is filled and marked loaded
        held = proxy.hold(rb"SETMETADATA .*/identity/n")
        props = {"email": f"{user}+c@example.com", "name": "Created"}
        creating = asyncio.create_task(jmap.request(("Identity/set", {"create": {"c": props}})))
        await held.reached.wait()
        # While the server keeps the entry, Redis starts refusing writes (out of memory:
        # HSET is refused, HDEL still allowed), so the cache's write of it fails.
        await redis_client.config_set("maxmemory", 1)
        try:
            held.release()
            (answer,) = await creating
        finally:
            await redis_client.config_set("maxmemory", 0)
            await redis_client.aclose()
        assert answer[0] == "error", answer
        (kept,) = metadata_entries(metadata_dovecot, user).values()
        assert kept["name"] == "Created"
        # The identity the server kept is seen, so a client's retry does not make a second.
        found = await identities(jmap)
        assert {i["name"] for i in found.values()} == {"", "Created"}


async def test_get_by_properties_and_changes_page_by_page(jmap: Jmap) -> None:
    start = await state(jmap)
    many = {f"c{i}": {"email": f"{jmap.username}+{i}@example.com"} for i in range(3)}
    created = (await jmap.call("Identity/set", create=many))["created"]
    ids = [created[f"c{i}"]["id"] for i in range(3)]
    got = await jmap.call("Identity/get", ids=ids[:1], properties=["email"])
    assert got["list"] == [{"id": ids[0], "email": f"{jmap.username}+0@example.com"}]
    bad = await jmap.request(("Identity/get", {"ids": None, "properties": ["colour"]}))
    assert bad[0][1]["type"] == "invalidArguments"
    first = await jmap.call("Identity/changes", sinceState=start, maxChanges=2)
    assert first["hasMoreChanges"] is True
    second = await jmap.call("Identity/changes", sinceState=first["newState"], maxChanges=2)
    assert second["hasMoreChanges"] is False
    assert sorted(first["created"] + second["created"]) == sorted(ids)
    assert second["newState"] == await state(jmap)


async def test_on_a_redis_cluster(
    metadata_dovecot: Dovecot, redis_cluster: RedisClusterSet
) -> None:
    """The identity cache, its journal and its read back from METADATA within one account's
    hash tag, on a real three-node cluster."""
    user = metadata_dovecot.fresh_user()
    async with (
        sending_gateway(metadata_dovecot.url, redis_cluster.url) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        jmap = await submission_client(http, user, metadata_dovecot.users[user])
        start = await state(jmap)
        created = await create(jmap, email=f"{user}+cl@example.com", name="Cluster")
        new_id = created["created"]["c"]["id"]
        changes = await jmap.call("Identity/changes", sinceState=start)
        assert changes["created"] == [new_id]
        before = await identities(jmap)
        owner = redis_cluster.owner(f"jg:{{{jmap.account_id}}}:meta")
        with owner.client() as client:
            client.delete(f"jg:{{{jmap.account_id}}}:identities")
            client.hdel(f"jg:{{{jmap.account_id}}}:meta", "identities-loaded")
        assert await identities(jmap) == before
