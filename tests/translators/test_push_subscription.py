"""PushSubscription/get and /set (RFC 8620 7.2) through a real gateway over HTTP: the RFC's own
example flow, url and keys never returned, immutable properties, two users kept apart, the
per-account bound, expiry, and what Redis holds (read raw with a plain client)."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.servers import Dovecot
from tests.translators.push_subscriptions import (
    PUSH_URL,
    Raw,
    User,
    push_gateway,
    push_settings,
    seconds,
    utc,
)

WEEK = 7 * 24 * 3600


@pytest.fixture
async def http(dovecot: Dovecot, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with push_gateway(push_settings(dovecot, redis_url)) as client:
        yield client


@pytest.fixture
async def alice(http: httpx.AsyncClient, dovecot: Dovecot) -> User:
    return await User(http, dovecot).start()


@pytest.fixture
async def raw(alice: User, redis_url: str) -> AsyncIterator[Raw]:
    reader = Raw(redis_url, alice.account_id)
    yield reader
    await reader.aclose()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def client_keys() -> dict[str, str]:
    """Keys as a browser's PushManager makes them (RFC 8291: a P-256 point, 16 octets)."""
    point = ec.generate_private_key(ec.SECP256R1()).public_key()
    uncompressed = point.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {"p256dh": b64url(uncompressed), "auth": b64url(b"\x01" * 16)}


async def test_the_rfc_example_flow(alice: User, raw: Raw) -> None:
    # "fetches the set of push subscriptions currently on the server"
    listed = await alice.call("PushSubscription/get", ids=None)
    assert listed == {"list": [], "notFound": []}
    before = time.time()
    response = await alice.call(
        "PushSubscription/set",
        create={"4f29": {"deviceClientId": "a889-ffea-910", "url": PUSH_URL, "types": None}},
    )
    after = time.time()
    # No accountId, no oldState/newState (RFC 8620 7.2).
    assert set(response) == {
        "created",
        "notCreated",
        "updated",
        "notUpdated",
        "destroyed",
        "notDestroyed",
    }
    created = response["created"]["4f29"]
    # "The server creates the push subscription but limits the expiry time to 7 days".
    assert set(created) == {"id", "keys", "expires"}
    assert created["keys"] is None
    assert int(before) + WEEK <= seconds(created["expires"]) <= after + WEEK
    sub_id = created["id"]
    # The PushVerification is queued at once (the delivery worker sends it).
    assert await raw.pending(sub_id) == {"verify": True, "attempts": 0}
    due = await raw.due(sub_id)
    assert due is not None and before * 1000 - 1 <= due <= after * 1000 + 1
    record = await raw.record(sub_id)
    assert record is not None
    code = record["verificationCode"]
    assert len(bytes.fromhex(code)) == 16 and record["verified"] is False
    assert await raw.login() == alice.name.encode()
    # Unverified: neither the code nor anything else is told to the client over the API.
    (shown,) = (await alice.call("PushSubscription/get", ids=[sub_id]))["list"]
    assert shown == {
        "id": sub_id,
        "deviceClientId": "a889-ffea-910",
        "verificationCode": None,
        "expires": created["expires"],
        "types": None,
    }
    assert await raw.subscribed() is None
    # A wrong code is invalidProperties (RFC 8620 7.2 MUST).
    wrong = await alice.call(
        "PushSubscription/set", update={sub_id: {"verificationCode": "0" * 32}}
    )
    assert wrong["updated"] is None
    assert wrong["notUpdated"][sub_id]["type"] == "invalidProperties"
    assert wrong["notUpdated"][sub_id]["properties"] == ["verificationCode"]
    # "The client receives this and updates the subscription with the verification code".
    right = await alice.call("PushSubscription/set", update={sub_id: {"verificationCode": code}})
    assert right["updated"] == {sub_id: None}
    assert (await raw.record(sub_id) or {})["verified"] is True
    assert await raw.pending(sub_id) is None
    assert await raw.subscribed() == seconds(created["expires"])
    (shown,) = (await alice.call("PushSubscription/get", ids=None))["list"]
    assert shown["verificationCode"] == code
    # "the client updates the subscription to extend its lifetime" past the limit: capped.
    before = time.time()
    extended = await alice.call(
        "PushSubscription/set", update={sub_id: {"expires": utc(time.time() + 40 * 86400)}}
    )
    after = time.time()
    new_expiry = seconds(extended["updated"][sub_id]["expires"])
    assert int(before) + WEEK <= new_expiry <= after + WEEK
    assert (await raw.record(sub_id) or {})["verified"] is True
    # Within the limit it is kept as asked, and not returned.
    asked = utc(time.time() + 3 * 86400)
    kept = await alice.call("PushSubscription/set", update={sub_id: {"expires": asked}})
    assert kept["updated"] == {sub_id: None}
    (shown,) = (await alice.call("PushSubscription/get", ids=[sub_id]))["list"]
    assert shown["expires"] == asked


async def test_url_and_keys_are_never_returned(alice: User) -> None:
    sub_id = (await alice.create(keys=client_keys()))["id"]
    for properties in (["url"], ["id", "keys"], ["deviceClientId", "url", "keys"]):
        (response,) = await alice.request(
            ("PushSubscription/get", {"ids": [sub_id], "properties": properties})
        )
        assert response[0] == "error"
        assert response[1]["type"] == "forbidden"
    picked = await alice.call("PushSubscription/get", ids=[sub_id, "nope"], properties=["types"])
    assert picked == {"list": [{"id": sub_id, "types": None}], "notFound": ["nope"]}
    (unknown,) = await alice.request(
        ("PushSubscription/get", {"ids": None, "properties": ["colour"]})
    )
    assert unknown[1]["type"] == "invalidArguments"


async def test_no_account_id_is_taken(alice: User) -> None:
    for name, args in (
        ("PushSubscription/get", {"accountId": alice.account_id}),
        ("PushSubscription/set", {"accountId": alice.account_id, "create": {}}),
        ("PushSubscription/set", {"ifInState": "x"}),
    ):
        (response,) = await alice.request((name, args))
        assert response[0] == "error"
        assert response[1]["type"] == "invalidArguments"


async def test_immutable_properties_cannot_change(alice: User) -> None:
    keys = client_keys()
    sub_id = (await alice.create(keys=keys))["id"]
    for patch, bad in (
        ({"url": "https://127.0.0.2:9/other"}, ["url"]),
        ({"keys": client_keys()}, ["keys"]),
        ({"keys": None}, ["keys"]),
        ({"deviceClientId": "other"}, ["deviceClientId"]),
        ({"id": "other"}, ["id"]),
        ({"keys/auth": "x"}, ["keys/auth"]),
        ({"colour": "red"}, ["colour"]),
    ):
        response = await alice.call("PushSubscription/set", update={sub_id: patch})
        error = response["notUpdated"][sub_id]
        assert error["type"] == "invalidProperties" and error["properties"] == bad, patch
    # RFC 8620 5.3: "changing" an immutable property to the value it has is no change.
    same = await alice.call(
        "PushSubscription/set",
        update={sub_id: {"deviceClientId": "a889-ffea-910", "url": PUSH_URL, "keys": keys}},
    )
    assert same["updated"] == {sub_id: None}
    types = await alice.call(
        "PushSubscription/set", update={sub_id: {"types": ["Email", "Mailbox"]}}
    )
    assert types["updated"] == {sub_id: None}
    (shown,) = (await alice.call("PushSubscription/get", ids=[sub_id]))["list"]
    assert shown["types"] == ["Email", "Mailbox"]


async def test_create_checks_every_property(alice: User) -> None:
    for props, bad in (
        ({"url": PUSH_URL}, ["deviceClientId"]),
        ({"deviceClientId": "d"}, ["url"]),
        ({"deviceClientId": "d", "url": PUSH_URL, "verificationCode": "abc"}, ["verificationCode"]),
        ({"deviceClientId": "", "url": PUSH_URL}, ["deviceClientId"]),
        ({"deviceClientId": "d" * 256, "url": PUSH_URL}, ["deviceClientId"]),
        ({"deviceClientId": "d", "url": PUSH_URL, "types": "Email"}, ["types"]),
        ({"deviceClientId": "d", "url": PUSH_URL, "types": [""]}, ["types"]),
        ({"deviceClientId": "d", "url": PUSH_URL, "expires": "tomorrow"}, ["expires"]),
        ({"deviceClientId": "d", "url": PUSH_URL, "id": "mine"}, ["id"]),
        ({"deviceClientId": "d", "url": "https://127.0.0.2/" + "x" * 2100}, ["url"]),
    ):
        error = await alice.not_created(**props)
        assert error["type"] == "invalidProperties" and error["properties"] == bad, props
    # Type names the server does not know are kept (RFC 8620 7.2's own example has "Todo").
    sub_id = (await alice.create(types=["Todo", "Email", "Todo"]))["id"]
    (shown,) = (await alice.call("PushSubscription/get", ids=[sub_id]))["list"]
    assert shown["types"] == ["Todo", "Email"]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.2:9/push", "https"),
        ("https://127.0.0.1/push", "loopback"),
        ("https://10.1.2.3/push", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[::1]/push", "loopback"),
        ("https://[fd00::1]/push", "unique local"),
        ("https://localhost/push", "resolves to"),
        ("https://user:pw@127.0.0.2:9/push", "user"),
        ("ftp://127.0.0.2/push", "https"),
        ("not a url", ""),
    ],
)
async def test_refused_urls_are_a_clear_set_error(
    alice: User, raw: Raw, url: str, reason: str
) -> None:
    error = await alice.not_created(deviceClientId="d", url=url)
    assert error["type"] == "invalidProperties"
    assert error["properties"] == ["url"]
    assert reason in error["description"], error
    assert await alice.call("PushSubscription/get") == {"list": [], "notFound": []}
    assert await raw.client.exists(f"{raw.base}:push-subscriptions") == 0


async def test_bad_keys_are_refused(alice: User) -> None:
    point = client_keys()["p256dh"]
    for keys in (
        {"p256dh": "abc", "auth": b64url(b"\x01" * 16)},
        {"p256dh": point, "auth": b64url(b"\x01" * 15)},
        {"p256dh": point},
        {"p256dh": point, "auth": b64url(b"\x01" * 16), "extra": "x"},
        "keys",
    ):
        error = await alice.not_created(deviceClientId="d", url=PUSH_URL, keys=keys)
        assert error["type"] == "invalidProperties" and error["properties"] == ["keys"], keys
    created = await alice.create(keys=client_keys())
    assert "keys" not in created


async def test_two_users_never_see_or_touch_each_others(
    http: httpx.AsyncClient, dovecot: Dovecot, alice: User, raw: Raw
) -> None:
    bob = await User(http, dovecot).start()
    mine = (await alice.create())["id"]
    theirs = (await bob.create())["id"]
    got = await bob.call("PushSubscription/get", ids=[mine, theirs])
    assert [s["id"] for s in got["list"]] == [theirs] and got["notFound"] == [mine]
    assert [s["id"] for s in (await alice.call("PushSubscription/get"))["list"]] == [mine]
    code = (await raw.record(mine) or {})["verificationCode"]
    touched = await bob.call(
        "PushSubscription/set",
        update={mine: {"verificationCode": code, "expires": None}},
        destroy=[mine],
    )
    assert touched["notUpdated"][mine]["type"] == "notFound"
    assert touched["notDestroyed"][mine]["type"] == "notFound"
    assert touched["updated"] is None and touched["destroyed"] is None
    record = await raw.record(mine)
    assert record is not None and record["verified"] is False


async def test_destroy_erases_the_subscription(alice: User, raw: Raw) -> None:
    sub_id = (await alice.create(keys=client_keys()))["id"]
    response = await alice.call("PushSubscription/set", destroy=[sub_id, "nope"])
    assert response["destroyed"] == [sub_id]
    assert response["notDestroyed"]["nope"]["type"] == "notFound"
    assert await raw.record(sub_id) is None
    assert await raw.pending(sub_id) is None
    assert await raw.due(sub_id) is None
    got = await alice.call("PushSubscription/get", ids=[sub_id])
    assert got == {"list": [], "notFound": [sub_id]}


async def test_a_creation_is_named_by_its_creation_id_in_the_same_request(
    alice: User, raw: Raw
) -> None:
    (response,) = await alice.request(
        (
            "PushSubscription/set",
            {
                "create": {"new": {"deviceClientId": "d", "url": PUSH_URL}},
                "update": {"#new": {"types": ["Email"]}},
            },
        )
    )
    sub_id = response[1]["created"]["new"]["id"]
    assert response[1]["updated"] == {sub_id: None}
    assert (await raw.record(sub_id) or {})["types"] == ["Email"]


async def test_an_expired_subscription_is_not_returned_and_is_erased(alice: User, raw: Raw) -> None:
    sub_id = (await alice.create())["id"]
    past = utc(time.time() - 60)
    # A past expiry is taken as given (RFC 8620 7.2 bounds only the future).
    response = await alice.call("PushSubscription/set", update={sub_id: {"expires": past}})
    assert response["updated"] == {sub_id: None}
    got = await alice.call("PushSubscription/get", ids=[sub_id])
    assert got == {"list": [], "notFound": [sub_id]}
    assert await raw.record(sub_id) is None
    assert await raw.due(sub_id) is None


async def test_creation_past_the_bound_is_over_quota(dovecot: Dovecot, redis_url: str) -> None:
    settings = push_settings(dovecot, redis_url, push_subscriptions_per_account=2)
    async with push_gateway(settings) as http:
        user = await User(http, dovecot).start()
        first = (await user.create())["id"]
        await user.create()
        response = await user.call(
            "PushSubscription/set",
            create={
                "c": {"deviceClientId": "d", "url": PUSH_URL},
                "d": {"deviceClientId": "d", "url": PUSH_URL},
            },
        )
        assert response["created"] is None
        assert {e["type"] for e in response["notCreated"].values()} == {"overQuota"}
        # A destroy makes room again.
        await user.call("PushSubscription/set", destroy=[first])
        assert (await user.create())["id"]
        assert len((await user.call("PushSubscription/get"))["list"]) == 2


async def test_the_lifetime_setting_caps_expires(dovecot: Dovecot, redis_url: str) -> None:
    settings = push_settings(dovecot, redis_url, push_subscription_seconds=3 * 86400)
    async with push_gateway(settings) as http:
        user = await User(http, dovecot).start()
        before = time.time()
        created = await user.create(expires=utc(time.time() + 5 * 86400))
        assert int(before) + 3 * 86400 <= seconds(created["expires"]) <= time.time() + 3 * 86400
