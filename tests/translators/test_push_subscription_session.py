"""The Session and PushSubscription: the methods are core methods every deployment serves, and
RFC 9749's capability carries the VAPID public key exactly where the operator configured one."""

from __future__ import annotations

import base64

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.webpush.vapid import new_private_key
from tests.conftest import master_settings
from tests.servers import Dovecot
from tests.translators.push_subscriptions import User, push_gateway, push_settings

VAPID = "urn:ietf:params:jmap:webpush-vapid"
GATEWAY_PUSH = "urn:jmap-gateway:push"


def public_point(private_b64url: str) -> bytes:
    """The uncompressed public point of a base64url private scalar, computed here."""
    scalar = int.from_bytes(base64.urlsafe_b64decode(private_b64url + "=" * 2), "big")
    key = ec.derive_private_key(scalar, ec.SECP256R1())
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


async def session(http: httpx.AsyncClient, user: User) -> dict[str, object]:
    response = await http.get("/jmap/session", auth=user.auth)
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


async def test_the_vapid_key_is_advertised_when_configured(
    dovecot: Dovecot, redis_url: str
) -> None:
    private = new_private_key()
    settings = push_settings(
        dovecot,
        redis_url,
        webpush_vapid_private_key=private,
        webpush_vapid_subject="mailto:ops@example.org",
    )
    async with push_gateway(settings) as http:
        user = await User(http, dovecot).start()
        capabilities = (await session(http, user))["capabilities"]
        assert isinstance(capabilities, dict)
        key = capabilities[VAPID]["applicationServerKey"]
        assert base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)) == public_point(private)
        # A capability of the Session only: accounts do not list it.
        accounts = (await session(http, user))["accounts"]
        assert isinstance(accounts, dict)
        assert VAPID not in accounts[user.account_id]["accountCapabilities"]


async def test_without_vapid_there_is_no_capability_but_the_methods_remain(
    dovecot: Dovecot, redis_url: str
) -> None:
    async with push_gateway(push_settings(dovecot, redis_url)) as http:
        user = await User(http, dovecot).start()
        capabilities = (await session(http, user))["capabilities"]
        assert isinstance(capabilities, dict)
        assert VAPID not in capabilities
        assert await user.call("PushSubscription/get") == {"list": [], "notFound": []}


@pytest.mark.parametrize("master", [False, True])
async def test_the_session_says_whether_other_clients_changes_are_pushed(
    request: pytest.FixtureRequest, redis_url: str, master: bool
) -> None:
    """Only with the operator's master login are changes by other IMAP clients pushed to a
    user with no client connected."""
    server: Dovecot = request.getfixturevalue("master_dovecot" if master else "dovecot")
    settings = master_settings(server, redis_url) if master else push_settings(server, redis_url)
    async with push_gateway(settings) as http:
        user = await User(http, server).start()
        capabilities = (await session(http, user))["capabilities"]
        assert isinstance(capabilities, dict)
        assert capabilities[GATEWAY_PUSH] == {"changesByOtherClients": master}
