"""EmailSubmission/get and /changes through a gateway (RFC 8621 7.1, 7.2), records from the
store, answers checked against the RFC's object shape."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx
import redis.asyncio as aioredis

from gateway.translators.submission.objects import PROPERTIES
from tests.servers import Dovecot
from tests.translators.submissions import (
    Sender,
    new_sender,
    redis_client,
    sender,
    submission,
    submission_gateway,
    submission_http,
)

__all__ = ["redis_client", "sender", "submission_gateway", "submission_http"]

# RFC 8621 7: the properties marked server-set, and the one a client may change.
SERVER_SET = {"id", "threadId", "sendAt", "deliveryStatus", "dsnBlobIds", "mdnBlobIds"}
MUTABLE = {"undoStatus"}


def test_the_property_table_says_what_the_rfc_says() -> None:
    assert PROPERTIES.server_set == SERVER_SET
    assert PROPERTIES.mutable == MUTABLE
    assert list(PROPERTIES.defaults) == [
        "id", "identityId", "emailId", "threadId", "envelope", "sendAt", "undoStatus",
        "deliveryStatus", "dsnBlobIds", "mdnBlobIds",
    ]  # fmt: skip


async def test_get_renders_the_rfc_object(sender: Sender) -> None:
    final = submission("Sfinal", email_id="Mx", thread_id="Tx")
    pending = submission("Spend", undo_status="pending")
    await sender.store.create(final)
    await sender.store.create(pending)
    answer = await sender.call("EmailSubmission/get", ids=["Sfinal", "Spend", "Snone", "Sfinal"])
    assert answer["notFound"] == ["Snone"]
    assert answer["state"] == await sender.store.state()
    first, second = answer["list"]
    assert first == {
        "id": "Sfinal",
        "identityId": "I1",
        "emailId": "Mx",
        "threadId": "Tx",
        "envelope": {
            "mailFrom": {"email": "alice@example.com", "parameters": {"ENVID": "Sfinal"}},
            "rcptTo": [
                {"email": "bob@example.com", "parameters": None},
                {"email": "carol@example.com", "parameters": {"NOTIFY": "FAILURE"}},
            ],
        },
        "sendAt": "2026-12-07T09:00:00Z",
        "undoStatus": "final",
        "deliveryStatus": {
            "bob@example.com": {
                "smtpReply": "250 2.0.0 Ok: queued as 4Xyz",
                "delivered": "queued",
                "displayed": "unknown",
            },
            "carol@example.com": {
                "smtpReply": "550 5.1.1 <carol@example.com>: Recipient address rejected",
                "delivered": "no",
                "displayed": "unknown",
            },
        },
        "dsnBlobIds": ["Gdsn1"],
        "mdnBlobIds": [],
    }
    assert (second["id"], second["undoStatus"], second["deliveryStatus"]) == (
        "Spend",
        "pending",
        None,
    )
    every = await sender.call("EmailSubmission/get", ids=None, properties=["undoStatus"])
    assert sorted(every["list"], key=lambda o: o["id"]) == [
        {"id": "Sfinal", "undoStatus": "final"},
        {"id": "Spend", "undoStatus": "pending"},
    ]
    assert every["notFound"] == []
    bad = await sender.error("EmailSubmission/get", ids=None, properties=["sentAt"])
    assert bad["type"] == "invalidArguments"


async def test_get_needs_the_submission_capability(sender: Sender) -> None:
    (response,) = await sender.jmap.request(("EmailSubmission/get", {"ids": None}))
    assert response[0] == "error" and response[1]["type"] == "unknownMethod"


async def test_users_see_their_own_submissions_only(
    dovecot: Dovecot,
    submission_http: httpx.AsyncClient,
    redis_client: aioredis.Redis,
    sender: Sender,
) -> None:
    other = await new_sender(dovecot, submission_http, redis_client)
    await sender.store.create(submission("Ssame", email_id="Mmine"))
    await other.store.create(submission("Ssame", email_id="Mtheirs"))
    await other.store.create(submission("Sonlytheirs"))
    mine = await sender.call("EmailSubmission/get", ids=["Ssame", "Sonlytheirs"])
    assert [o["emailId"] for o in mine["list"]] == ["Mmine"]
    assert mine["notFound"] == ["Sonlytheirs"]
    everything = await sender.call("EmailSubmission/get", ids=None)
    assert [o["id"] for o in everything["list"]] == ["Ssame"]
    queried = await sender.call("EmailSubmission/query")
    assert queried["ids"] == ["Ssame"]
    # Naming the other account is refused outright.
    (response,) = await sender.request(
        ("EmailSubmission/get", {"accountId": other.jmap.account_id, "ids": ["Ssame"]})
    )
    assert response[0] == "error" and response[1]["type"] == "accountNotFound"


async def test_changes_after_create_replace_destroy(sender: Sender) -> None:
    start = (await sender.call("EmailSubmission/get", ids=[]))["state"]
    await sender.store.create(submission("Sa", undo_status="pending"))
    await sender.store.create(submission("Sb"))
    created = await sender.call("EmailSubmission/changes", sinceState=start)
    assert (created["created"], created["updated"], created["destroyed"]) == (["Sa", "Sb"], [], [])
    assert created["oldState"] == start and not created["hasMoreChanges"]
    middle = created["newState"]
    assert middle == (await sender.call("EmailSubmission/get", ids=[]))["state"]
    canceled = replace(
        submission("Sa", undo_status="pending"), undo_status="canceled", finished_at=time.time()
    )
    assert await sender.store.replace(canceled, expect="pending")
    assert await sender.store.destroy(["Sb"]) == ["Sb"]
    later = await sender.call("EmailSubmission/changes", sinceState=middle)
    assert (later["created"], later["updated"], later["destroyed"]) == ([], ["Sa"], ["Sb"])
    # A page at a time: at most one id each, ending at the same state.
    state, pages = start, 0
    while True:
        page = await sender.call("EmailSubmission/changes", sinceState=state, maxChanges=1)
        assert len(page["created"] + page["updated"] + page["destroyed"]) <= 1
        state, pages = page["newState"], pages + 1
        if not page["hasMoreChanges"]:
            break
    assert state == later["newState"] and pages > 1
    unknown = await sender.error("EmailSubmission/changes", sinceState="nonsense")
    assert unknown["type"] == "cannotCalculateChanges"


async def test_retention_expires_finished_submissions(sender: Sender) -> None:
    """The gateway runs with a retention of 60 s: a submission finished two minutes ago is
    destroyed on the next read and /changes reports it; pending and recent ones stay."""
    now = time.time()
    await sender.store.create(submission("Sfresh", finished_at=now))
    await sender.store.create(submission("Spend", undo_status="pending"))
    before = (await sender.call("EmailSubmission/get", ids=[]))["state"]
    # Finished long ago: put in through a handle without retention, as the sender task may.
    await sender.store.create(submission("Sold", undo_status="canceled", finished_at=now - 120))
    created = await sender.store.state()
    answer = await sender.call("EmailSubmission/get", ids=["Sold", "Sfresh", "Spend"])
    assert [o["id"] for o in answer["list"]] == ["Sfresh", "Spend"]
    assert answer["notFound"] == ["Sold"]
    assert await sender.store.get(["Sold"]) == {}
    changes = await sender.call("EmailSubmission/changes", sinceState=created)
    assert (changes["created"], changes["updated"], changes["destroyed"]) == ([], [], ["Sold"])
    # A client that never saw it hears nothing of it.
    missed = await sender.call("EmailSubmission/changes", sinceState=before)
    assert (missed["created"], missed["destroyed"]) == ([], [])
