"""Helpers of the delayed-send tests: a user's draft sent through EmailSubmission/set with a
HOLDFOR/HOLDUNTIL, the Session's maxDelayedSend, and waiting for a record's state."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.jmapclient import CORE, MAIL, Jmap

SUBMISSION = "urn:ietf:params:jmap:submission"
DOMAIN = "example.com"


async def request(user: Jmap, *calls: tuple[str, dict[str, Any]]) -> list[list[Any]]:
    """Calls using the submission capability (accountId filled in)."""
    method_calls = [
        [name, {"accountId": user.account_id, **args}, f"c{i}"]
        for i, (name, args) in enumerate(calls)
    ]
    body = {"using": [CORE, MAIL, SUBMISSION], "methodCalls": method_calls}
    response = await user.http.post(
        "/jmap/api/",
        content=json.dumps(body),
        auth=user.auth,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    return response.json()["methodResponses"]  # type: ignore[no-any-return]


async def max_delayed_send(user: Jmap) -> int:
    session = (await user.http.get("/jmap/session", auth=user.auth)).json()
    return int(
        session["accounts"][user.account_id]["accountCapabilities"][SUBMISSION]["maxDelayedSend"]
    )


async def submission_extensions(user: Jmap) -> dict[str, list[str]]:
    session = (await user.http.get("/jmap/session", auth=user.auth)).json()
    capability = session["accounts"][user.account_id]["accountCapabilities"][SUBMISSION]
    return capability["submissionExtensions"]  # type: ignore[no-any-return]


async def draft_id(user: Jmap, subject: str, to: str = "bob@example.org") -> str:
    """A draft from the user's own address, created through Email/set."""
    drafts = (await user.mailboxes())["Drafts"]["id"]
    created = {
        "mailboxIds": {drafts: True},
        "keywords": {"$draft": True},
        "from": [{"email": f"{user.username}@{DOMAIN}"}],
        "to": [{"email": to}],
        "subject": subject,
        "textBody": [{"partId": "t", "type": "text/plain"}],
        "bodyValues": {"t": {"value": f"{subject}\n"}},
    }
    answer = await user.call("Email/set", create={"d": created})
    return str(answer["created"]["d"]["id"])


async def identity_id(user: Jmap) -> str:
    (response,) = await request(user, ("Identity/get", {"ids": None}))
    return str(response[1]["list"][0]["id"])


async def submit_later(
    user: Jmap, subject: str, parameters: dict[str, str | None], to: str = "bob@example.org"
) -> list[Any]:
    """EmailSubmission/set create of a new draft with ``parameters`` on mailFrom; the
    response of that call."""
    email_id = await draft_id(user, subject, to)
    envelope = {
        "mailFrom": {"email": f"{user.username}@{DOMAIN}", "parameters": parameters},
        "rcptTo": [{"email": to, "parameters": None}],
    }
    create = {"identityId": await identity_id(user), "emailId": email_id, "envelope": envelope}
    (response,) = await request(user, ("EmailSubmission/set", {"create": {"s": create}}))
    return response


async def submission(user: Jmap, submission_id: str) -> dict[str, Any]:
    (response,) = await request(user, ("EmailSubmission/get", {"ids": [submission_id]}))
    (found,) = response[1]["list"]
    return found  # type: ignore[no-any-return]


async def settled(user: Jmap, submission_id: str, tries: int = 1000) -> dict[str, Any]:
    """The submission once it is no longer pending."""
    for _ in range(tries):
        found = await submission(user, submission_id)
        if found["undoStatus"] != "pending":
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"{submission_id} stayed pending")
