"""Issue 17's judgement for watching without the user's password, end to end: a gateway with a
Dovecot master user, a PushSubscription made and verified through the API against a real local
push receiver, then NO client connected, an APPEND by a plain imaplib session: the receiver
gets one StateChange naming the new Email state, which Email/get then confirms. Without master
credentials, the same APPEND is not pushed (the Session's promise: only changes made through
the gateway)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.conftest import MASTER_USER
from tests.jmapclient import Jmap
from tests.push.conftest import serve
from tests.push.eventsource_client import Gateway, states_via_get
from tests.push.watching import catch_ups, eventually, imap, message
from tests.push.webpush_gateway import set_code, subscribe, webpush_settings
from tests.push.webpush_receiver import WebPushReceiver
from tests.servers import Dovecot

# The shortest watch lease (a full round every second); pushes not held back by a throttle.
SETTINGS = {"push_watch_lease_seconds": 3.0, "webpush_min_interval_seconds": 0}
# The longest throttle: the verification push must not start it (review M6), or the APPEND's
# StateChange would wait an hour.
THROTTLED = {**SETTINGS, "webpush_min_interval_seconds": 3600}
WAIT = 15.0
# Full rounds a test lets pass before it says nothing more came.
SETTLE_SECONDS = 4.0


async def pushing(dovecot: Dovecot, redis_url: str, *, master: bool) -> AsyncIterator[Gateway]:
    extra = (
        {"imap_master_user": MASTER_USER[0], "imap_master_password": MASTER_USER[1]}
        if master
        else {}
    )
    settings = THROTTLED if master else SETTINGS
    async for gateway in serve(dovecot, redis_url, **webpush_settings(None, **settings, **extra)):
        yield gateway


@pytest.fixture
async def master_gateway(master_dovecot: Dovecot, redis_url: str) -> AsyncIterator[Gateway]:
    async for gateway in pushing(master_dovecot, redis_url, master=True):
        yield gateway


@pytest.fixture
async def plain_gateway(master_dovecot: Dovecot, redis_url: str) -> AsyncIterator[Gateway]:
    async for gateway in pushing(master_dovecot, redis_url, master=False):
        yield gateway


async def subscribed_user(
    dovecot: Dovecot, gateway: Gateway, receiver: WebPushReceiver
) -> tuple[Jmap, str]:
    """A fresh user whose index is built, with a verified subscription to ``receiver``; then
    every request of theirs is over (no listener, no request in flight)."""
    name = dovecot.fresh_user()
    user = await Jmap(gateway.http, name, dovecot.users[name]).start()
    await states_via_get(user)
    sub_id = await subscribe(user, receiver.url())
    [verification] = await receiver.wait_for(1, timeout=WAIT)
    assert verification.json()["@type"] == "PushVerification"
    await set_code(user, sub_id, verification.json()["verificationCode"])
    return user, sub_id


def append(subject: str) -> object:
    return lambda c: c.append("INBOX", "", None, message(subject))


async def test_an_append_by_another_client_is_pushed_with_no_client_connected(
    master_dovecot: Dovecot, master_gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    svc = master_gateway.svc
    async with WebPushReceiver() as receiver:
        user, _ = await subscribed_user(master_dovecot, master_gateway, receiver)
        account = user.account_id
        assert svc.push.listeners == 0
        assert svc.keeper.candidates(account) == []
        await eventually(lambda: account in svc.watches.watching(), WAIT)
        await eventually(lambda: catch_ups(svc) >= 1, WAIT)
        # The first catch-up found the index current: nothing pushed beyond the verification.
        before = len(receiver.requests)
        appended = time.monotonic()
        await imap(master_dovecot, user.username, append("pushed while away"))
        pushes = await receiver.wait_for(before + 1, timeout=WAIT)
        latency = time.monotonic() - appended
        change = pushes[before].json()
        assert change["@type"] == "StateChange"
        pushed_email = change["changed"][account]["Email"]
        # Nothing more for that one APPEND (the catch-up's commits coalesced into one push).
        await asyncio.sleep(SETTLE_SECONDS)
        assert len(receiver.requests) == before + 1
        # The pushed state is the one Email/get answers now.
        assert (await states_via_get(user))["Email"] == pushed_email
    with capsys.disabled():
        print(f"\nAPPEND to push, measured while shared: {latency:.2f} s (issue: within 2 s)")


async def test_without_master_credentials_another_clients_append_is_not_pushed(
    master_dovecot: Dovecot, plain_gateway: Gateway
) -> None:
    svc = plain_gateway.svc
    async with WebPushReceiver() as receiver:
        user, _ = await subscribed_user(master_dovecot, plain_gateway, receiver)
        before = len(receiver.requests)
        await imap(master_dovecot, user.username, append("not seen"))
        await asyncio.sleep(SETTLE_SECONDS)
        assert len(receiver.requests) == before
        assert svc.watches.watching() == frozenset()
        # Changes made through the gateway still are (the Email/get below catches up first).
        await states_via_get(user)
        pushes = await receiver.wait_for(before + 1, timeout=WAIT)
        assert pushes[before].json()["@type"] == "StateChange"
