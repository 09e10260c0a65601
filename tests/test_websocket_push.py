"""Push over JMAP WebSockets (RFC 8887 4.3.5) against a real gateway, Dovecot and Redis:
WebSocketPushEnable and Disable, StateChange, pushState after a reconnect, push tokens.

The ground truth is what the API itself says: the state a StateChange announces must be the
one Foo/get answers over HTTP after the change.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.jmapclient import CORE, MAIL, Jmap
from tests.jmapsocket import basic, jmap_socket, receive, receive_where, request
from tests.servers import Dovecot

ECHO = {"using": [CORE], "methodCalls": [["Core/echo", {}, "e"]]}


@pytest.fixture
def auth(dovecot: Dovecot, jmap: Jmap) -> dict[str, str]:
    return basic(jmap.username, dovecot.users[jmap.username])


async def enable(
    socket: ClientConnection, data_types: list[str] | None = None, push_state: str | None = None
) -> None:
    message: dict[str, Any] = {"@type": "WebSocketPushEnable", "dataTypes": data_types}
    if push_state is not None:
        message["pushState"] = push_state
    await socket.send(json.dumps(message))


async def state_change(socket: ClientConnection) -> dict[str, Any]:
    return await receive_where(socket, lambda m: m["@type"] == "StateChange")


async def pushed(socket: ClientConnection, jmap: Jmap, data_type: str) -> dict[str, Any]:
    """The StateChange announcing ``data_type``'s state as Foo/get now tells it. Earlier ones
    may come first: reading the state over HTTP lets the gateway catch up with the upstream,
    which may move the state once more (and push that too)."""
    truth = await state_of(jmap, data_type)
    return await receive_where(
        socket,
        lambda m: (
            m["@type"] == "StateChange"
            and m["changed"].get(jmap.account_id, {}).get(data_type) == truth
        ),
    )


async def new_mailbox(jmap: Jmap, name: str) -> str:
    created = await jmap.call("Mailbox/set", create={"n": {"name": name}})
    return str(created["created"]["n"]["id"])


async def state_of(jmap: Jmap, data_type: str) -> str:
    return str((await jmap.call(f"{data_type}/get", ids=[]))["state"])


async def new_email(jmap: Jmap, mailbox_id: str, subject: str) -> None:
    email = {
        "mailboxIds": {mailbox_id: True},
        "from": [{"email": "sender@example.org"}],
        "subject": subject,
        "bodyStructure": {"type": "text/plain", "partId": "t"},
        "bodyValues": {"t": {"value": "push me\n"}},
    }
    created = await jmap.call("Email/set", create={"e": email})
    assert "e" in created["created"], created


async def round_trip(socket: ClientConnection) -> None:
    """Every message the gateway wrote before this request's Response has arrived before it
    (one socket, one order); StateChange messages meanwhile are returned by the caller's own
    reads, not skipped: this asserts none came."""
    await socket.send(json.dumps({"@type": "Request", "id": "sync", **ECHO}))
    answer = await receive(socket)
    assert answer["@type"] == "Response", f"unexpected {answer}"


async def test_a_change_through_the_api_is_pushed_with_its_state(
    gateway: str, auth: dict[str, str], jmap: Jmap
) -> None:
    async with jmap_socket(gateway, auth) as socket:
        await enable(socket)
        await round_trip(socket)  # enabled, and nothing sent without a pushState
        await new_mailbox(jmap, "Pushed")
        change = await pushed(socket, jmap, "Mailbox")
        assert set(change) == {"@type", "changed", "pushState"}
        assert list(change["changed"]) == [jmap.account_id]
        assert isinstance(change["pushState"], str) and change["pushState"]


async def test_data_types_filter_what_is_pushed(
    gateway: str, auth: dict[str, str], jmap: Jmap
) -> None:
    inbox = (await jmap.mailboxes())["Inbox"]["id"]
    async with jmap_socket(gateway, auth) as socket:
        await enable(socket, ["Email", "NoSuchType"])
        await round_trip(socket)
        await new_mailbox(jmap, "Unheard")  # a Mailbox change only
        await new_email(jmap, inbox, "heard")  # Email (and Mailbox, Thread) changes
        change = await pushed(socket, jmap, "Email")
        assert set(change["changed"][jmap.account_id]) == {"Email"}
        # Enabling again replaces the types.
        await enable(socket, ["Mailbox"])
        await round_trip(socket)
        await new_mailbox(jmap, "Heard now")
        change = await pushed(socket, jmap, "Mailbox")
        assert set(change["changed"][jmap.account_id]) == {"Mailbox"}


async def test_disable_stops_state_changes(gateway: str, auth: dict[str, str], jmap: Jmap) -> None:
    async with jmap_socket(gateway, auth) as socket, jmap_socket(gateway, auth) as witness:
        await enable(socket, ["Mailbox"])
        await enable(witness, ["Mailbox"])
        await round_trip(socket)
        await round_trip(witness)
        await socket.send(json.dumps({"@type": "WebSocketPushDisable"}))
        await round_trip(socket)
        await new_mailbox(jmap, "Only the witness hears")
        await state_change(witness)  # the change was announced to listeners
        await round_trip(socket)  # ... and none reached the disabled socket
        # Enabled again, the socket hears the next change, not the one it missed.
        await enable(socket, ["Mailbox"])
        await round_trip(socket)
        await new_mailbox(jmap, "Both hear")
        await pushed(socket, jmap, "Mailbox")


async def test_push_state_sends_what_changed_while_disconnected(
    gateway: str, auth: dict[str, str], jmap: Jmap
) -> None:
    async with jmap_socket(gateway, auth) as socket:
        await enable(socket)
        await new_mailbox(jmap, "Before")
        push_state = (await state_change(socket))["pushState"]
    mailbox_before = await state_of(jmap, "Mailbox")
    email_before = await state_of(jmap, "Email")
    await new_mailbox(jmap, "While away")
    mailbox_now = await state_of(jmap, "Mailbox")
    assert mailbox_now != mailbox_before
    async with jmap_socket(gateway, auth) as socket:
        await enable(socket, None, push_state)
        # RFC 8887 4.3.5.2: the changes since that pushState, at once: only Mailbox moved.
        change = await receive(socket)
        assert change["@type"] == "StateChange"
        assert change["changed"] == {jmap.account_id: {"Mailbox": mailbox_now}}
        assert await state_of(jmap, "Email") == email_before
        # The newest pushState, given back, has nothing to send.
        await enable(socket, None, change["pushState"])
        await round_trip(socket)
    async with jmap_socket(gateway, auth) as socket:
        # A pushState the gateway cannot read: every current state is sent.
        await enable(socket, ["Mailbox", "Email"], "not-a-push-state")
        change = await receive(socket)
        assert change["@type"] == "StateChange"
        assert change["changed"] == {
            jmap.account_id: {"Mailbox": mailbox_now, "Email": email_before}
        }


async def test_a_push_token_socket_pushes_and_refuses_requests(gateway: str, jmap: Jmap) -> None:
    minted = await jmap.http.post("/jmap/push/token", auth=jmap.auth)
    assert minted.status_code == 200, minted.text
    token = minted.json()["token"]
    async with jmap_socket(gateway, query=f"access_token={token}") as socket:
        await enable(socket, ["Mailbox"])
        answer = await request(socket, {"using": [CORE, MAIL], "methodCalls": []}, "r")
        assert answer["@type"] == "RequestError"
        assert answer["status"] == 403
        await new_mailbox(jmap, "Token heard")
        await pushed(socket, jmap, "Mailbox")


async def test_a_bad_push_token_is_refused(gateway: str) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as raised:
        async with jmap_socket(gateway, query="access_token=p1.AAAA.BBBB"):
            pass
    assert raised.value.response.status_code == 401
