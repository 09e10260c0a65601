"""RFC 8620 7.2.2 end to end through a real receiver: a created subscription gets its
PushVerification (encrypted for its keys, signed with VAPID) and nothing else until the client
sets the code; then a change made through the API is pushed as one StateChange naming the
state Email/get answers."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest

from gateway.push.states import newer
from tests.push.conftest import new_user
from tests.push.eventsource_client import Gateway, create_draft
from tests.push.webpush_gateway import (
    VapidPair,
    serve_pushing,
    set_code,
    subscribe,
)
from tests.push.webpush_keys import DeviceKeys, verify_vapid
from tests.push.webpush_receiver import WebPushReceiver
from tests.servers import Dovecot

VAPID = VapidPair()


@pytest.fixture
async def pushing(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Gateway]:
    async for gateway in serve_pushing(dovecot, redis_url, VAPID):
        yield gateway


async def test_verification_then_one_state_change(
    dovecot: Dovecot, pushing: Gateway, receiver: WebPushReceiver
) -> None:
    user = await new_user(dovecot, pushing)
    device = DeviceKeys()
    url = receiver.url("/push/device-1")
    sub_id = await subscribe(user, url, keys=device.keys)

    (verification,) = await receiver.wait_for(1)
    # RFC 8291 / RFC 8030: an encrypted push, with its TTL; VAPID as RFC 8292 says.
    assert verification.method == "POST"
    assert verification.headers["content-encoding"] == "aes128gcm"
    assert int(verification.headers["ttl"]) == pushing.svc.settings.webpush_ttl_seconds
    assert verification.headers["urgency"] == "high"
    assert len(verification.body) <= 4096
    claims = verify_vapid(verification.headers["authorization"], VAPID.public_b64url, url)
    assert claims["sub"] == "mailto:push-operator@example.net"
    assert claims["exp"] <= time.time() + 24 * 3600 + 60
    pushed = json.loads(device.decrypt(verification.body))
    assert pushed["@type"] == "PushVerification"
    assert pushed["pushSubscriptionId"] == sub_id
    code = pushed["verificationCode"]
    assert isinstance(code, str) and len(code) >= 16

    # Not verified yet: this change is never pushed (RFC 8620 7.2: no further request).
    await create_draft(user, "before the code")
    await set_code(user, sub_id, code)
    state = await create_draft(user, "after the code")

    requests = await receiver.wait_for(2)
    change = requests[1]
    assert change.headers["content-encoding"] == "aes128gcm"
    assert change.headers["urgency"] == "normal"
    verify_vapid(change.headers["authorization"], VAPID.public_b64url, url)
    body = json.loads(device.decrypt(change.body))
    assert body["@type"] == "StateChange"
    assert set(body["changed"]) == {user.account_id}
    pushed_state = body["changed"][user.account_id]["Email"]
    assert pushed_state == state or newer(state, pushed_state), (pushed_state, state)
    # What /get answers now is what was pushed.
    assert pushed_state == (await user.call("Email/get", ids=[]))["state"]
    assert len(receiver.requests) == 2, receiver.requests


@pytest.mark.parametrize("types", [None, ["Mailbox", "Email"]])
async def test_a_state_change_names_every_subscribed_type_at_its_state(
    dovecot: Dovecot, pushing: Gateway, receiver: WebPushReceiver, types: list[str] | None
) -> None:
    """A StateChange goes with a Topic, so a push service replaces an undelivered one with
    it (RFC 8030 5.4): it names the state of every type the subscription asks for, not only
    those of the last change, or a replaced push's types would never be heard of. The
    change here (a flag) moves the Email state alone."""
    user = await new_user(dovecot, pushing)
    drafts = (await user.mailboxes())["Drafts"]["id"]
    created = await user.call(
        "Email/set", create={"d": {"mailboxIds": {drafts: True}, "subject": "flag me"}}
    )
    email_id = created["created"]["d"]["id"]
    device = DeviceKeys()
    sub_id = await subscribe(user, receiver.url("/push/d"), keys=device.keys, types=types)
    (verification,) = await receiver.wait_for(1)
    await set_code(user, sub_id, json.loads(device.decrypt(verification.body))["verificationCode"])
    before = {t: (await user.call(f"{t}/get", ids=[]))["state"] for t in ("Mailbox", "Thread")}

    flagged = await user.call("Email/set", update={email_id: {"keywords/$flagged": True}})
    assert email_id in flagged["updated"], flagged

    change = (await receiver.wait_for(2))[1]
    assert change.headers["topic"]
    pushed = json.loads(device.decrypt(change.body))["changed"][user.account_id]
    # Ground truth: each type's /get state now; the flag left Mailbox and Thread as they were.
    now = {
        t: (await user.call(f"{t}/get", ids=[]))["state"] for t in ("Mailbox", "Email", "Thread")
    }
    assert {t: now[t] for t in before} == before
    # Without sending configured the served types are Mailbox, Email and Thread.
    wanted = ["Mailbox", "Email", "Thread"] if types is None else types
    assert pushed == {t: now[t] for t in wanted}
