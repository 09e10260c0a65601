"""Every argument of every method, given a value of the wrong JSON type, is the client's error
(invalidArguments or another error the RFC names), never serverFail: no converter's refusal,
TypeError or KeyError may escape a handler. The arguments include the members of objects
inside them (filter conditions, comparators, created and patched objects)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import Mail
from tests.translators.push_subscriptions import PUSH_URL, User, push_gateway, push_settings
from tests.translators.submissions import (
    Sender,
    redis_client,
    sender,
    submission,
    submission_gateway,
    submission_http,
)

__all__ = ["redis_client", "sender", "submission_gateway", "submission_http"]

# Values of every JSON type, and text int() would read as a number.
WRONG: tuple[Any, ...] = (None, True, 0, -1, 1.5, "", "x", "\u0661\u0662", [], [1], {}, {"a": 1})
FAILURES = {"serverFail", "serverPartialFail"}


def variants(args: dict[str, Any], path: tuple[str | int, ...]) -> Iterator[dict[str, Any]]:
    """``args`` with the value at ``path`` replaced by each WRONG value."""
    for wrong in WRONG:
        copy = json.loads(json.dumps(args))
        target: Any = copy
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = wrong
        yield copy


def leaves(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The path of every member, at every depth."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        yield (*path, key)
        if isinstance(item, dict | list):
            yield from leaves(item, (*path, key))


def calls(email: str, inbox: str, blob: str) -> dict[str, dict[str, Any]]:
    """A valid call of each method, with every argument present that a wrong value could
    trip; accountId is added by the client (and checked by the dispatcher)."""
    query_filter = {
        "operator": "AND",
        "conditions": [
            {"inMailbox": inbox, "inMailboxOtherThan": [inbox], "hasKeyword": "$seen"},
            {"before": "2030-01-01T00:00:00Z", "after": "2000-01-01T00:00:00Z"},
            {"minSize": 1, "maxSize": 10**9, "notKeyword": "$draft", "hasAttachment": False},
            {"allInThreadHaveKeyword": "$seen", "someInThreadHaveKeyword": "$seen"},
            {"noneInThreadHaveKeyword": "$junk", "text": "hello", "from": "ann"},
            {"to": "bob", "cc": "c", "bcc": "d", "subject": "m", "body": "h"},
            {"header": ["X-Test-Key", "a"]},
        ],
    }
    sort = [
        {"property": "receivedAt", "isAscending": False, "collation": "i;unicode-casemap"},
        {"property": "hasKeyword", "keyword": "$seen"},
    ]
    body = {"partId": "1", "type": "text/plain"}
    return {
        "Mailbox/get": {"ids": [inbox], "properties": ["name", "role"]},
        "Mailbox/changes": {"sinceState": "x-0", "maxChanges": 5},
        "Mailbox/query": {
            "filter": {"operator": "OR", "conditions": [{"name": "I", "parentId": None}]},
            "sort": [{"property": "name", "isAscending": True, "collation": "i;octet"}],
            "position": 0,
            "anchor": inbox,
            "anchorOffset": 0,
            "limit": 5,
            "calculateTotal": True,
            "sortAsTree": False,
            "filterAsTree": False,
        },
        "Mailbox/queryChanges": {
            "filter": {"role": "inbox", "hasAnyRole": True, "isSubscribed": True},
            "sort": [{"property": "sortOrder"}],
            "sinceQueryState": "x-0",
            "maxChanges": 5,
            "upToId": inbox,
            "calculateTotal": True,
        },
        "Mailbox/set": {
            "ifInState": None,
            "create": {"n": {"name": "new", "parentId": None, "sortOrder": 3}},
            "update": {inbox: {"sortOrder": 2, "isSubscribed": True}},
            "destroy": [],
            "onDestroyRemoveEmails": False,
        },
        "Email/get": {
            "ids": [email],
            "properties": ["subject", "header:Subject:asText", "bodyStructure", "bodyValues"],
            "bodyProperties": ["partId", "type"],
            "fetchTextBodyValues": True,
            "fetchHTMLBodyValues": False,
            "fetchAllBodyValues": False,
            "maxBodyValueBytes": 100,
        },
        "Email/changes": {"sinceState": "x-0", "maxChanges": 5},
        "Email/query": {
            "filter": query_filter,
            "sort": sort,
            "position": 0,
            "anchor": email,
            "anchorOffset": 0,
            "limit": 5,
            "calculateTotal": True,
            "collapseThreads": True,
        },
        "Email/queryChanges": {
            "filter": {"inMailbox": inbox},
            "sort": sort,
            "sinceQueryState": "x-0",
            "maxChanges": 5,
            "upToId": email,
            "calculateTotal": False,
            "collapseThreads": False,
        },
        "Email/set": {
            "ifInState": None,
            "create": {
                "c": {
                    "mailboxIds": {inbox: True},
                    "keywords": {"$seen": True},
                    "receivedAt": "2020-01-01T00:00:00Z",
                    "from": [{"name": "A", "email": "a@example.org"}],
                    "subject": "s",
                    "header:X-Test:asText": "t",
                    "bodyStructure": {
                        "type": "multipart/mixed",
                        "subParts": [body, {"blobId": blob, "type": "text/plain"}],
                    },
                    "bodyValues": {"1": {"value": "v", "isTruncated": False}},
                }
            },
            "update": {email: {"keywords/$flagged": True, f"mailboxIds/{inbox}": True}},
            "destroy": [],
        },
        "Email/import": {
            "ifInState": None,
            "emails": {"i": {"blobId": blob, "mailboxIds": {inbox: True}, "keywords": {}}},
        },
        "Email/parse": {
            "blobIds": [blob],
            "properties": ["subject"],
            "bodyProperties": ["partId"],
            "fetchTextBodyValues": True,
            "maxBodyValueBytes": 10,
        },
        "Email/copy": {
            "fromAccountId": "other",
            "ifFromInState": None,
            "ifInState": None,
            "create": {"k": {"id": email, "mailboxIds": {inbox: True}}},
            "onSuccessDestroyOriginal": False,
            "destroyFromIfInState": None,
        },
        "SearchSnippet/get": {"filter": {"text": "hello"}, "emailIds": [email]},
        "Thread/get": {"ids": ["t"], "properties": ["emailIds"]},
        "Thread/changes": {"sinceState": "x-0", "maxChanges": 5},
        "Blob/copy": {"fromAccountId": "other", "blobIds": [blob]},
    }


def submission_calls() -> dict[str, dict[str, Any]]:
    """The same for the methods of the submission capability (RFC 8621 6 and 7)."""
    submission_filter = {
        "operator": "OR",
        "conditions": [
            {"identityIds": ["I1"], "emailIds": ["M1"], "threadIds": ["T1"]},
            {"undoStatus": "pending", "before": "2030-01-01T00:00:00Z"},
            {"after": "2000-01-01T00:00:00Z"},
        ],
    }
    sort = [
        {"property": "emailId", "isAscending": False, "collation": "i;octet"},
        {"property": "sentAt"},
    ]
    return {
        "EmailSubmission/get": {"ids": ["S1"], "properties": ["undoStatus", "envelope"]},
        "EmailSubmission/changes": {"sinceState": "x-0", "maxChanges": 5},
        "EmailSubmission/query": {
            "filter": submission_filter,
            "sort": sort,
            "position": 0,
            "anchor": "S1",
            "anchorOffset": 0,
            "limit": 5,
            "calculateTotal": True,
        },
        "EmailSubmission/queryChanges": {
            "filter": submission_filter,
            "sort": sort,
            "sinceQueryState": "x-0",
            "maxChanges": 5,
            "upToId": "S1",
            "calculateTotal": True,
        },
        "EmailSubmission/set": {
            "ifInState": None,
            "create": {
                "c": {
                    "identityId": "I1",
                    "emailId": "M1",
                    "envelope": {
                        "mailFrom": {"email": "a@example.org", "parameters": {"RET": "HDRS"}},
                        "rcptTo": [{"email": "b@example.org", "parameters": None}],
                    },
                }
            },
            "update": {"S1": {"undoStatus": "canceled"}},
            "destroy": ["S2"],
            "onSuccessUpdateEmail": {"#c": {"keywords/$draft": None}, "S1": {}},
            "onSuccessDestroyEmail": ["#c", "S1"],
        },
        "Identity/get": {"ids": ["I1"], "properties": ["name", "email"]},
        "Identity/changes": {"sinceState": "x-0", "maxChanges": 5},
        "Identity/set": {
            "ifInState": None,
            "create": {
                "i": {
                    "name": "N",
                    "email": "a@example.org",
                    "replyTo": [{"name": "R", "email": "r@example.org"}],
                    "bcc": [{"name": None, "email": "b@example.org"}],
                    "textSignature": "t",
                    "htmlSignature": "<p>h</p>",
                }
            },
            "update": {"I1": {"name": "M", "replyTo": None}},
            "destroy": ["I2"],
        },
    }


def push_subscription_calls() -> dict[str, dict[str, Any]]:
    """The same for PushSubscription (RFC 8620 7.2), which takes no accountId."""
    return {
        "PushSubscription/get": {"ids": ["P1"], "properties": ["expires", "types"]},
        "PushSubscription/set": {
            "create": {
                "p": {
                    "deviceClientId": "d",
                    "url": PUSH_URL,
                    "keys": {"p256dh": "BA", "auth": "AA"},
                    "verificationCode": None,
                    "expires": "2030-01-01T00:00:00Z",
                    "types": ["Email"],
                }
            },
            "update": {"P1": {"verificationCode": "c", "expires": None, "types": None}},
            "destroy": ["P1"],
        },
    }


Request = Callable[..., Awaitable[list[list[Any]]]]


async def server_failures(
    request: Request, methods: dict[str, dict[str, Any]]
) -> list[tuple[tuple[str, dict[str, Any]], list[Any]]]:
    """Every wrong-type variant of every argument of ``methods``, sent through ``request``:
    those answered with a server failure."""
    batch: list[tuple[str, dict[str, Any]]] = []
    answered: list[list[Any]] = []
    for method, args in methods.items():
        for path in leaves(args):
            batch += [(method, variant) for variant in variants(args, path)]
    for start in range(0, len(batch), 32):
        answered += await request(*batch[start : start + 32])
    assert len(answered) >= len(batch)
    # Every call reached its handler (a method not offered would prove nothing).
    assert not [a for a in answered if a[0] == "error" and a[1]["type"] == "unknownMethod"]
    return [
        (call, answer)
        for call, answer in zip(batch, answered, strict=False)
        if answer[0] == "error" and answer[1]["type"] in FAILURES
    ]


@pytest.fixture
async def setup(dovecot: Dovecot, jmap: Jmap) -> tuple[str, str, str]:
    mail = Mail(dovecot, jmap.username)
    mail.append("INBOX", "a")
    mail.close()
    (email,) = (await jmap.call("Email/query"))["ids"]
    inbox = (await jmap.mailboxes())["Inbox"]["id"]
    blob = await jmap.upload(b"From: a@example.org\r\nSubject: up\r\n\r\nuploaded\r\n")
    return email, inbox, blob


async def test_no_wrong_type_is_a_server_failure(jmap: Jmap, setup: tuple[str, str, str]) -> None:
    assert await server_failures(jmap.request, calls(*setup)) == []


async def test_no_wrong_type_is_a_server_failure_in_submission(sender: Sender) -> None:
    await sender.store.create(submission("S1", undo_status="pending"))
    assert await server_failures(sender.request, submission_calls()) == []


async def test_no_wrong_type_is_a_server_failure_in_push_subscriptions(
    dovecot: Dovecot, redis_url: str
) -> None:
    async with push_gateway(push_settings(dovecot, redis_url)) as http:
        user = await User(http, dovecot).start()
        assert await server_failures(user.request, push_subscription_calls()) == []


@pytest.mark.parametrize("method", ["Email/query", "Email/queryChanges"])
@pytest.mark.parametrize("value", ["yes", 1, None, [], {}])
async def test_collapse_threads_of_a_wrong_type_is_invalid_arguments(
    jmap: Jmap, method: str, value: Any
) -> None:
    args: dict[str, Any] = {"collapseThreads": value}
    if method == "Email/queryChanges":
        args["sinceQueryState"] = "x-0"
    ((name, error, _),) = await jmap.request((method, args))
    assert name == "error"
    assert error["type"] == "invalidArguments"
    assert error["arguments"] == ["collapseThreads"]


async def test_wrong_types_of_booleans_name_their_argument(jmap: Jmap) -> None:
    answers = await jmap.request(
        ("Mailbox/query", {"sortAsTree": "yes", "filterAsTree": 0}),
        ("Email/get", {"ids": [], "fetchTextBodyValues": "yes"}),
    )
    assert [a[1]["type"] for a in answers] == ["invalidArguments"] * 2
    assert answers[0][1]["arguments"] == ["sortAsTree", "filterAsTree"]
    assert answers[1][1]["arguments"] == ["fetchTextBodyValues"]


def test_every_method_is_exercised() -> None:
    from gateway.services import method_registry

    registry = method_registry()
    exercised = {**calls("e", "i", "b"), **submission_calls(), **push_subscription_calls()}
    assert all(registry.get(name) for name in exercised)
    assert len(registry._methods) - 1 == len(exercised)  # all but Core/echo
