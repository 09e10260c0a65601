"""Two real gateway processes on one Redis (issue 17: "Two gateway processes: one push per
change, not two"): the subscription's verification and each change, wherever it was made, reach
the push service once. Both processes poll the one due queue; only one claims each push, and
only the process that committed a change enqueues it."""

from __future__ import annotations

import itertools
import json

import httpx

from gateway.push.states import newer
from tests.gateways import running_gateways
from tests.jmapclient import Jmap
from tests.push.eventsource_client import create_draft
from tests.push.webpush_gateway import set_code, subscribe
from tests.push.webpush_receiver import Request, WebPushReceiver
from tests.servers import Dovecot

WAIT = 30.0
SETTINGS = {
    "webpush_allow_http": "true",
    "webpush_allowed_destinations": "127.0.0.1",
    # Short, so the three changes go out quickly; coalescing is another test's.
    "webpush_min_interval_seconds": "1",
}


def email_state(request: Request, account_id: str) -> str | None:
    body = json.loads(request.body)
    if body["@type"] != "StateChange":
        return None
    return body["changed"].get(account_id, {}).get("Email")  # type: ignore[no-any-return]


def reached(told: str | None, state: str) -> bool:
    """Whether a push telling ``told`` tells of ``state`` (it or a later one merged in)."""
    return told is not None and (told == state or newer(state, told))


async def pushed(receiver: WebPushReceiver, account_id: str, state: str) -> None:
    """Wait until a push names ``state`` (or a later one) as the Email state."""
    count = 1
    while True:
        requests = await receiver.wait_for(count, timeout=WAIT)
        if any(reached(email_state(r, account_id), state) for r in requests):
            return
        count = len(requests) + 1


async def test_one_push_per_change_across_two_processes(
    dovecot: Dovecot, redis_url: str, receiver: WebPushReceiver
) -> None:
    name = dovecot.fresh_user()
    password = dovecot.users[name]
    async with (
        running_gateways(2, imap_url=dovecot.url, redis_url=redis_url, **SETTINGS) as processes,
        httpx.AsyncClient(base_url=processes[0].base_url, timeout=WAIT) as http0,
        httpx.AsyncClient(base_url=processes[1].base_url, timeout=WAIT) as http1,
    ):
        user0 = await Jmap(http0, name, password).start()
        user1 = await Jmap(http1, name, password).start()
        assert user0.account_id == user1.account_id
        account = user0.account_id
        await user0.call("Email/get", ids=[])  # the first sync

        sub_id = await subscribe(user0, receiver.url())
        (verification,) = await receiver.wait_for(1, timeout=WAIT)
        await set_code(user1, sub_id, json.loads(verification.body)["verificationCode"])

        states = []
        for user, subject in ((user1, "via one"), (user0, "via zero"), (user1, "marker")):
            state = await create_draft(user, subject)
            await pushed(receiver, account, state)
            states.append(state)

        bodies = [r.body for r in receiver.requests]
        # No push twice (a second process sending the same claim would repeat its body), the
        # PushVerification first and once, and each change's state told once, in order (a
        # request's catch-up may commit states of its own between them: those may be told too).
        assert len(set(bodies)) == len(bodies), bodies
        kinds = [json.loads(body)["@type"] for body in bodies]
        assert kinds == ["PushVerification"] + ["StateChange"] * (len(bodies) - 1), kinds
        told = [email_state(r, account) for r in receiver.requests[1:]]
        # Each change told by a push of its own (the next change was made after it arrived),
        # in order, and no state told twice.
        named = [s for s in told if s is not None]
        assert len(named) >= len(states), (named, states)
        assert all(newer(a, b) for a, b in itertools.pairwise(named)), named
