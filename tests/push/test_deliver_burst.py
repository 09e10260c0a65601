"""A burst of changes is coalesced (issue 17: "a burst of new mail is one push, not fifty"): 20
Email/set calls in quick succession reach a verified subscription as at most two pushes, the
last naming the state Email/get answers after the burst."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.push.conftest import new_user
from tests.push.eventsource_client import Gateway, create_draft
from tests.push.webpush_gateway import serve_pushing, set_code, subscribe
from tests.push.webpush_receiver import WebPushReceiver
from tests.servers import Dovecot

BURST = 20
# The throttle: wide enough that the burst fits in it on a loaded machine (a push at its
# start, one after the throttle for the rest).
MIN_INTERVAL = 15
WAIT = 60.0


@pytest.fixture
async def pushing(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Gateway]:
    settings = {"webpush_min_interval_seconds": MIN_INTERVAL}
    async for gateway in serve_pushing(dovecot, redis_url, None, **settings):
        yield gateway


async def test_twenty_changes_make_at_most_two_pushes(
    dovecot: Dovecot, pushing: Gateway, receiver: WebPushReceiver
) -> None:
    user = await new_user(dovecot, pushing)
    await create_draft(user, "burst target")
    (target,) = (await user.call("Email/query", limit=1))["ids"]
    sub_id = await subscribe(user, receiver.url(), types=["Email"])
    (verification,) = await receiver.wait_for(1)
    await set_code(user, sub_id, json.loads(verification.body)["verificationCode"])

    for i in range(BURST):
        flag = True if i % 2 == 0 else None  # set, then removed (RFC 8620 5.3 patch: null)
        answer = await user.call("Email/set", update={target: {"keywords/$flagged": flag}})
        assert target in answer["updated"], answer
    final = (await user.call("Email/get", ids=[]))["state"]

    def told(request_body: bytes) -> str | None:
        body = json.loads(request_body)
        if body["@type"] != "StateChange":
            return None
        return body["changed"][user.account_id].get("Email")  # type: ignore[no-any-return]

    # Wait for the push naming the final state; pushes are in order, so it is the last.
    count = 2
    while True:
        requests = await receiver.wait_for(count, timeout=WAIT)
        if told(requests[-1].body) == final:
            break
        count += 1
    changes = [json.loads(r.body) for r in requests[1:]]
    assert 1 <= len(changes) <= 2, changes
    for change in changes:
        assert change["@type"] == "StateChange"
        # types ["Email"]: other types are omitted (RFC 8620 7.2).
        assert set(change["changed"][user.account_id]) == {"Email"}
