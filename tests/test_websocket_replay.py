"""The same JMAP requests over HTTP and over a WebSocket (RFC 8887) give the same Responses.

Two fresh users get the same mail (the same messages, dates and folders, through a plain IMAP
client); one runs a script of requests over HTTP, the other the same script over a socket.
Their answers must be equal everywhere except for the account's own identifiers (account id,
object ids, states, sessionState), and those must correspond one to one across the whole run:
a consistent renaming, never a different value in a place where the other has an equal one.
"""

from __future__ import annotations

import imaplib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.jmapclient import CORE, MAIL, Jmap
from tests.jmapsocket import basic, jmap_socket, request
from tests.servers import Dovecot

Answer = dict[str, Any]
# A step builds its request from the account id and the answers of the steps before it.
Step = Callable[[str, list[Answer]], dict[str, Any]]

MESSAGES = [
    (
        f"Subject: replay {i}\r\nFrom: a{i}@example.org\r\nTo: b@example.org\r\n"
        f"Message-ID: <replay-{i}@example.org>\r\n\r\nbody {i}\r\n"
    ).encode()
    for i in range(3)
]


def seed(dovecot: Dovecot, user: str) -> None:
    client = dovecot.client(user)
    try:
        client.create("Archive")
        for i, message in enumerate(MESSAGES):
            date = imaplib.Time2Internaldate(1_700_000_000 + 3600 * i)
            client.append("INBOX" if i < 2 else "Archive", "", date, message)
    finally:
        client.logout()


def calls(*invocations: list[Any]) -> dict[str, Any]:
    return {"using": [CORE, MAIL], "methodCalls": list(invocations)}


def responses(answer: Answer, index: int = 0) -> dict[str, Any]:
    return answer["methodResponses"][index][1]  # type: ignore[no-any-return]


def inbox(mailboxes: Answer) -> str:
    return next(m["id"] for m in responses(mailboxes)["list"] if m["role"] == "inbox")


def in_name_order(mailboxes: Answer) -> Answer:
    """Mailbox/get lists folders in an order of their ids, which differ between accounts."""
    listed = responses(mailboxes)["list"]
    listed.sort(key=lambda mailbox: mailbox["name"])
    return mailboxes


SCRIPT: list[Step] = [
    lambda a, _: calls(["Mailbox/get", {"accountId": a, "ids": None}, "m"]),
    # A back-reference: the query's ids feed the get.
    lambda a, _: calls(
        ["Email/query", {"accountId": a, "sort": [{"property": "receivedAt"}]}, "q"],
        [
            "Email/get",
            {
                "accountId": a,
                "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                "properties": ["subject", "from", "receivedAt", "keywords", "mailboxIds"],
            },
            "g",
        ],
    ),
    lambda a, done: calls(
        [
            "Email/get",
            {
                "accountId": a,
                "ids": responses(done[1])["ids"],
                "fetchTextBodyValues": True,
                "properties": ["threadId", "textBody", "bodyValues", "preview", "size"],
            },
            "b",
        ]
    ),
    lambda a, done: calls(
        [
            "Email/set",
            {
                "accountId": a,
                "update": {responses(done[1])["ids"][0]: {"keywords/$flagged": True}},
                "create": {
                    "new": {
                        "mailboxIds": {inbox(done[0]): True},
                        "from": [{"email": "c@example.org"}],
                        "subject": "created",
                        "receivedAt": "2024-01-02T03:04:05Z",
                        "bodyStructure": {"type": "text/plain", "partId": "t"},
                        "bodyValues": {"t": {"value": "created\n"}},
                    }
                },
            },
            "s",
        ]
    ),
    lambda a, done: calls(
        ["Email/changes", {"accountId": a, "sinceState": responses(done[1], 1)["state"]}, "c"],
        ["Mailbox/changes", {"accountId": a, "sinceState": responses(done[0])["state"]}, "d"],
    ),
    # Method errors: an unknown method, bad arguments, a broken back-reference.
    lambda a, _: calls(
        ["Foo/bar", {"accountId": a}, "u"],
        ["Email/query", {"accountId": a, "filter": {"noSuchCondition": 1}}, "f"],
        ["Email/get", {"accountId": a, "#ids": {"resultOf": "x", "name": "Y", "path": "/z"}}, "r"],
        ["Email/get", {"accountId": "not-an-account", "ids": []}, "n"],
    ),
    # A request-level error: a capability the server does not know.
    lambda a, _: {"using": [CORE, "urn:example:unknown"], "methodCalls": []},
    lambda a, _: calls(["Core/echo", {"hello": [1, "two", None]}, "e"]),
]


async def over_http(http: httpx.AsyncClient, jmap: Jmap) -> list[Answer]:
    done: list[Answer] = []
    for step in SCRIPT:
        response = await http.post(
            "/jmap/api/",
            content=json.dumps(step(jmap.account_id, done)),
            auth=jmap.auth,
            headers={"content-type": "application/json"},
        )
        answer = response.json()
        done.append(answer if response.status_code == 200 else {"problem": answer})
    return done


async def over_socket(
    gateway: str, jmap: Jmap, password: str, send: Callable[..., Awaitable[Answer]]
) -> list[Answer]:
    done: list[Answer] = []
    async with jmap_socket(gateway, basic(jmap.username, password)) as socket:
        for number, step in enumerate(SCRIPT):
            answer = await send(socket, step(jmap.account_id, done), f"step-{number}")
            kind = answer.pop("@type")
            assert answer.pop("requestId") == f"step-{number}"
            done.append(answer if kind == "Response" else {"problem": answer})
    return done


class Renaming:
    """Asserts two JSON values are equal up to one consistent renaming of strings."""

    def __init__(self) -> None:
        self.forward: dict[str, str] = {}
        self.backward: dict[str, str] = {}

    def same(self, a: Any, b: Any, where: str) -> None:
        if isinstance(a, str) and isinstance(b, str):
            assert self.forward.setdefault(a, b) == b, f"{where}: {a!r} -> {b!r}"
            assert self.backward.setdefault(b, a) == a, f"{where}: {a!r} <- {b!r}"
        elif isinstance(a, dict) and isinstance(b, dict):
            assert len(a) == len(b), f"{where}: {sorted(a)} vs {sorted(b)}"
            # Keys may be ids too: pair known ones, the rest in the order they were written.
            unknown_a = [key for key in a if self.forward.get(key) not in b]
            known_b = {self.forward[key] for key in a if key not in unknown_a}
            unknown_b = [key for key in b if key not in known_b]
            for key_a, key_b in zip(unknown_a, unknown_b, strict=True):
                self.same(key_a, key_b, f"{where} key")
            for key in a:
                self.same(a[key], b[self.forward[key]], f"{where}/{key}")
        elif isinstance(a, list) and isinstance(b, list):
            assert len(a) == len(b), f"{where}: {len(a)} vs {len(b)} items"
            for index, (item_a, item_b) in enumerate(zip(a, b, strict=True)):
                self.same(item_a, item_b, f"{where}[{index}]")
        else:
            assert a == b, f"{where}: {a!r} vs {b!r}"


async def test_http_and_websocket_answer_alike(
    dovecot: Dovecot, gateway: str, http: httpx.AsyncClient
) -> None:
    over_web, over_ws = dovecot.fresh_user(), dovecot.fresh_user()
    for user in (over_web, over_ws):
        seed(dovecot, user)
    web = await Jmap(http, over_web, dovecot.users[over_web]).start()
    ws = await Jmap(http, over_ws, dovecot.users[over_ws]).start()
    by_http = await over_http(http, web)
    by_socket = await over_socket(gateway, ws, dovecot.users[over_ws], request)
    renaming = Renaming()
    # The users' names and accounts differ by construction; everything else must follow.
    renaming.same(web.username, ws.username, "username")
    in_name_order(by_http[0])
    in_name_order(by_socket[0])
    for number, (a, b) in enumerate(zip(by_http, by_socket, strict=True)):
        renaming.same(a, b, f"step {number}")
    # The script did what it says, so the comparison compared something.
    assert by_http[-2]["problem"]["type"] == "urn:ietf:params:jmap:error:unknownCapability"
    assert [r[0] for r in by_http[5]["methodResponses"]] == ["error"] * 4
    assert "new" in responses(by_http[3])["created"]
    assert responses(by_http[4])["created"] == [responses(by_http[3])["created"]["new"]["id"]]
    assert all(value == key for key, value in renaming.forward.items() if key.startswith("replay"))
