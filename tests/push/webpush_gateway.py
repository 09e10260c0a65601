"""What the delivery tests share: a gateway allowed to push to the loopback receiver over http
with a VAPID key of the test's own, and PushSubscription calls (core methods without
accountId, RFC 8620 7.2)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.jmapclient import Jmap
from tests.push.conftest import serve
from tests.push.eventsource_client import Gateway
from tests.push.webpush_keys import b64url
from tests.servers import Dovecot

WAIT_SECONDS = 10.0

T = TypeVar("T")
SUBJECT = "mailto:push-operator@example.net"


class VapidPair:
    """An operator's VAPID key pair (RFC 8292), as the settings take it and as a push service
    verifies it."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.public_b64url = b64url(
            self.key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )


def webpush_settings(vapid: VapidPair | None, **overrides: Any) -> dict[str, Any]:
    """Pushes may go to the loopback receiver over plain http; VAPID with ``vapid``'s key."""
    values: dict[str, Any] = {
        "webpush_allow_http": True,
        "webpush_allowed_destinations": "127.0.0.1",
    }
    if vapid is not None:
        values["webpush_vapid_private_key"] = vapid.pem
        values["webpush_vapid_subject"] = SUBJECT
    return {**values, **overrides}


async def serve_pushing(
    dovecot: Dovecot, redis_url: str, vapid: VapidPair | None, **overrides: Any
) -> AsyncIterator[Gateway]:
    async for gateway in serve(dovecot, redis_url, **webpush_settings(vapid, **overrides)):
        yield gateway


async def push_call(user: Jmap, name: str, **args: Any) -> dict[str, Any]:
    """A PushSubscription call: no accountId (RFC 8620 7.2); fails the test on an error."""
    body = {"using": ["urn:ietf:params:jmap:core"], "methodCalls": [[name, args, "c0"]]}
    response = await user.http.post(
        "/jmap/api/",
        content=json.dumps(body),
        auth=user.auth,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    ((answered, answer, _),) = response.json()["methodResponses"]
    assert answered == name, answer
    return answer  # type: ignore[no-any-return]


async def subscribe(
    user: Jmap,
    url: str,
    *,
    keys: dict[str, str] | None = None,
    types: list[str] | None = None,
    device: str = "device-1",
) -> str:
    """PushSubscription/set create; the new subscription's id."""
    created: dict[str, Any] = {"deviceClientId": device, "url": url, "types": types}
    if keys is not None:
        created["keys"] = keys
    answer = await push_call(user, "PushSubscription/set", create={"s": created})
    assert "s" in answer["created"], answer
    return str(answer["created"]["s"]["id"])


async def set_code(user: Jmap, sub_id: str, code: str) -> None:
    """RFC 8620 7.2.2: the client echoes the PushVerification's code."""
    answer = await push_call(
        user, "PushSubscription/set", update={sub_id: {"verificationCode": code}}
    )
    assert sub_id in (answer.get("updated") or {}), answer


async def listed(user: Jmap) -> list[str]:
    """The ids PushSubscription/get lists for ``user``."""
    answer = await push_call(user, "PushSubscription/get", ids=None)
    return [item["id"] for item in answer["list"]]


async def wait_for(condition: Callable[[], bool], timeout: float = WAIT_SECONDS) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = WAIT_SECONDS) -> T:
    """Ask ``check`` until it answers something other than None (or False); that answer."""
    async with asyncio.timeout(timeout):
        while True:
            found = await check()
            if found is not None and found is not False:
                return found
            await asyncio.sleep(0.05)
