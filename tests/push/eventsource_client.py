"""What the event-source tests share: the gateway fixture's handle, a stream opener, the
states as each type's /get answers them, and changes made through the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from gateway.services import Services
from tests.jmapclient import Jmap
from tests.push.sse import Event, Stream

# The gateway's ping minimum in these tests: a ping of 1 must come out as this.
PING_MIN = 2
ALL = {"types": "*", "closeafter": "no", "ping": "0"}
MAIL_TYPES = ("Mailbox", "Email", "Thread")


@dataclass
class Gateway:
    url: str
    svc: Services
    http: httpx.AsyncClient


@asynccontextmanager
async def stream(
    http: httpx.AsyncClient,
    auth: httpx.Auth | None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Stream]:
    request = http.build_request("GET", "/jmap/eventsource/", params=query or ALL, headers=headers)
    response = await http.send(request, auth=auth or httpx.USE_CLIENT_DEFAULT, stream=True)
    try:
        assert response.status_code == 200, (await response.aread()).decode()
        yield Stream(response)
    finally:
        await response.aclose()


async def states_via_get(user: Jmap) -> dict[str, str]:
    """Each type's state as its /get answers it: what a pushed state must equal. Identity
    and EmailSubmission need the submission capability, which a gateway without SMTP lacks,
    so the types read here are those of the mail capability."""
    calls = [(f"{name}/get", {"ids": []}) for name in MAIL_TYPES]
    answers = await user.request(*calls)
    return {name.split("/")[0]: args["state"] for name, args, _ in answers}


async def assert_current(changed: dict[str, str], user: Jmap) -> None:
    """``changed`` holds every type the client can fetch here (on a gateway without SMTP, no
    Identity or EmailSubmission), each at the state /get answers."""
    truth = await states_via_get(user)
    assert changed == truth, (changed, truth)


def changed_of(event: Event, account_id: str) -> dict[str, str]:
    assert event.type == "state", event
    body = event.json()
    assert body["@type"] == "StateChange"
    assert set(body["changed"]) == {account_id}
    return body["changed"][account_id]  # type: ignore[no-any-return]


async def create_mailbox(user: Jmap, name: str) -> str:
    """Mailbox/set create; the new Mailbox state."""
    answer = await user.call("Mailbox/set", create={"m": {"name": name}})
    assert "m" in answer["created"], answer
    return str(answer["newState"])


async def create_draft(user: Jmap, subject: str) -> str:
    """Email/set create of a draft; the new Email state."""
    drafts = (await user.mailboxes())["Drafts"]["id"]
    created = {
        "mailboxIds": {drafts: True},
        "keywords": {"$draft": True},
        "subject": subject,
        "textBody": [{"partId": "t", "type": "text/plain"}],
        "bodyValues": {"t": {"value": f"{subject}\n"}},
    }
    answer = await user.call("Email/set", create={"d": created})
    assert "d" in answer["created"], answer
    return str(answer["newState"])


async def until_state(s: Stream, account_id: str, data_type: str, state: str) -> Event:
    """Read state events until one says ``data_type`` is at ``state``."""
    while True:
        event = await s.next()
        if changed_of(event, account_id).get(data_type) == state:
            return event


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)
