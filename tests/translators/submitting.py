"""What the Identity and EmailSubmission tests share: clients and requests that opt in to
submission, drafts made with Email/set, a draft submitted now or later (HOLDFOR/HOLDUNTIL),
the Session's submission capability, waiting for a record's state, what the recording SMTP
server (tests.smtp_servers.Sink) took from a user, and what Redis holds for a delayed send."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from tests.jmapclient import CORE, MAIL, SUBMISSION, Jmap
from tests.smtp_servers import Received, Sink

DOMAIN = "example.com"
# RFC 8621 1.3.2 and 6: Identity and EmailSubmission methods need the submission capability.
SUBMITTING = (CORE, MAIL, SUBMISSION)


async def submission_client(http: httpx.AsyncClient, user: str, password: str) -> Jmap:
    """A client whose every request names the submission capability."""
    jmap = await Jmap(http, user, password).start()
    jmap.using = SUBMITTING
    return jmap


async def request(jmap: Jmap, *calls: tuple[str, dict[str, Any]]) -> list[list[Any]]:
    """``calls`` in one request that opts in to mail and submission (accountId filled in),
    whatever the client names otherwise."""
    return await jmap.request(*calls, using=SUBMITTING)


def address(jmap: Jmap) -> str:
    """The user's own address (GATEWAY_MAIL_DOMAIN), their default Identity's."""
    return f"{jmap.username}@{DOMAIN}"


async def identity_id(jmap: Jmap) -> str:
    """The id of the user's one identity, the default."""
    (response,) = await request(jmap, ("Identity/get", {"ids": None}))
    assert response[0] == "Identity/get", response
    (identity,) = response[1]["list"]
    return str(identity["id"])


def draft(jmap: Jmap, mailboxes: dict[str, dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """An Email/set create of a draft from the user, To/Cc/Bcc as given (lists of addresses)."""
    email: dict[str, Any] = {
        "mailboxIds": {mailboxes["Drafts"]["id"]: True},
        "keywords": {"$draft": True, "$seen": True},
        "from": [{"name": "Sender", "email": address(jmap)}],
        "subject": "a message to send",
        "bodyStructure": {"type": "text/plain", "partId": "1"},
        "bodyValues": {"1": {"value": "Hello,\r\nthis is the text.\r\n"}},
    }
    for name in ("to", "cc", "bcc"):
        if name in fields:
            email[name] = [{"email": a} for a in fields.pop(name)]
    email.update(fields)
    return email


async def submit(
    user: Jmap, email_fields: dict[str, Any], submission: dict[str, Any] | None = None, **extra: Any
) -> list[list[Any]]:
    """Email/set create of a draft, then EmailSubmission/set create of it ("sub", with
    ``submission``'s properties) in one request; ``extra`` are EmailSubmission/set arguments."""
    mailboxes = await user.mailboxes()
    create = {"identityId": await identity_id(user), "emailId": "#draft", **(submission or {})}
    return await request(
        user,
        ("Email/set", {"create": {"draft": draft(user, mailboxes, **email_fields)}}),
        ("EmailSubmission/set", {"create": {"sub": create}, **extra}),
    )


async def draft_id(user: Jmap, subject: str, to: str = "bob@example.org") -> str:
    """A draft from the user's own address, created through Email/set."""
    drafts = (await user.mailboxes())["Drafts"]["id"]
    created = {
        "mailboxIds": {drafts: True},
        "keywords": {"$draft": True},
        "from": [{"email": address(user)}],
        "to": [{"email": to}],
        "subject": subject,
        "textBody": [{"partId": "t", "type": "text/plain"}],
        "bodyValues": {"t": {"value": f"{subject}\n"}},
    }
    answer = await user.call("Email/set", create={"d": created})
    return str(answer["created"]["d"]["id"])


async def submit_later(
    user: Jmap, subject: str, parameters: dict[str, str | None], to: str = "bob@example.org"
) -> list[Any]:
    """EmailSubmission/set create of a new draft with ``parameters`` on mailFrom; the
    response of that call."""
    email_id = await draft_id(user, subject, to)
    envelope = {
        "mailFrom": {"email": address(user), "parameters": parameters},
        "rcptTo": [{"email": to, "parameters": None}],
    }
    create = {"identityId": await identity_id(user), "emailId": email_id, "envelope": envelope}
    (response,) = await request(user, ("EmailSubmission/set", {"create": {"s": create}}))
    return response


async def submission_capability(user: Jmap) -> dict[str, Any]:
    """The Session's submission capability of the user's account (RFC 8621 1.3.2)."""
    session = (await user.http.get("/jmap/session", auth=user.auth)).json()
    return session["accounts"][user.account_id]["accountCapabilities"][SUBMISSION]  # type: ignore[no-any-return]


async def max_delayed_send(user: Jmap) -> int:
    return int((await submission_capability(user))["maxDelayedSend"])


async def submission_extensions(user: Jmap) -> dict[str, list[str]]:
    return (await submission_capability(user))["submissionExtensions"]  # type: ignore[no-any-return]


async def submission(user: Jmap, submission_id: str) -> dict[str, Any]:
    """The submission as EmailSubmission/get alone shows it: it catches the account up itself
    (no mail method in the request), so a client polling its submissions sees the reports."""
    (response,) = await request(user, ("EmailSubmission/get", {"ids": [submission_id]}))
    (found,) = response[1]["list"]
    return found  # type: ignore[no-any-return]


async def submission_when(
    user: Jmap,
    submission_id: str,
    done: Callable[[dict[str, Any]], bool],
    *,
    tries: int = 1000,
    pause: float = 0.02,
) -> dict[str, Any]:
    """The submission once ``done`` holds for it, polled with :func:`submission`."""
    for _ in range(tries):
        found = await submission(user, submission_id)
        if done(found):
            return found
        await asyncio.sleep(pause)
    raise AssertionError(f"{submission_id} never reached the state waited for: {found}")


async def settled(user: Jmap, submission_id: str, tries: int = 1000) -> dict[str, Any]:
    """The submission once it is no longer pending."""
    return await submission_when(
        user, submission_id, lambda found: found["undoStatus"] != "pending", tries=tries
    )


def sent_by(sink: Sink, jmap: Jmap) -> list[Received]:
    """What the shared sink took from this user (tests share it: each user is a test's own)."""
    return [r for r in list(sink.received) if r.mail_from == address(jmap)]


async def held_usage(client: Redis | RedisCluster, account_id: str) -> tuple[int, int]:
    """(held submissions, octets charged) of an account, read from Redis itself: the charges
    hash gateway.cache.held keeps (id -> octets, the total under "*")."""
    charges = await client.hgetall(f"jg:{{{account_id}}}:held-charges")
    total = int(charges.pop(b"*", charges.pop("*", 0)))
    return len(charges), total
