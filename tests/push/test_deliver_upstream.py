"""A change made by another IMAP client reaches a push subscription: the account's watcher
(kept here by an open EventSource) catches up, its commit goes through the journal on the
watching replica, and the enqueuer there turns it into the subscription's next push. Ground
truth: a plain imaplib APPEND, and the Email state Email/get answers afterwards."""

from __future__ import annotations

import imaplib
import json
import time
from collections.abc import AsyncIterator

import pytest

from tests.push.conftest import new_user
from tests.push.eventsource_client import Gateway, stream
from tests.push.watching import imap, message
from tests.push.webpush_gateway import serve_pushing, set_code, subscribe
from tests.push.webpush_receiver import WebPushReceiver
from tests.servers import Dovecot

WAIT = 30.0


@pytest.fixture
async def pushing(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Gateway]:
    async for gateway in serve_pushing(dovecot, redis_url, None):
        yield gateway


async def test_an_append_by_another_client_is_pushed(
    dovecot: Dovecot, pushing: Gateway, receiver: WebPushReceiver
) -> None:
    user = await new_user(dovecot, pushing)
    sub_id = await subscribe(user, receiver.url(), types=["Email"])
    (verification,) = await receiver.wait_for(1)
    await set_code(user, sub_id, json.loads(verification.body)["verificationCode"])

    async with stream(pushing.http, user.auth) as events:
        await events.next()  # the initial state: the listener is in place, its watcher starting

        def append(client: imaplib.IMAP4) -> None:
            client.append("INBOX", "", imaplib.Time2Internaldate(time.time()), message("pushed"))

        before = (await user.call("Email/get", ids=[]))["state"]
        await imap(dovecot, user.username, append)
        count = 2
        while True:
            requests = await receiver.wait_for(count, timeout=WAIT)
            told = json.loads(requests[-1].body)["changed"][user.account_id]["Email"]
            if told != before:
                break
            count += 1
    assert told == (await user.call("Email/get", ids=[]))["state"]
