"""What the EmailSubmission tests share: requests that opt in to submission, drafts made with
Email/set, and what the recording SMTP server (tests.smtp_servers.Sink) took from a user."""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from tests.jmapclient import CORE, MAIL, Jmap
from tests.smtp_servers import Received, Sink

SUBMISSION = "urn:ietf:params:jmap:submission"
DOMAIN = "example.com"


async def request(jmap: Jmap, *calls: tuple[str, dict[str, Any]]) -> list[list[Any]]:
    """``calls`` in one request that opts in to mail and submission (accountId filled in)."""
    method_calls = [
        [name, {"accountId": jmap.account_id, **args}, f"c{i}"]
        for i, (name, args) in enumerate(calls)
    ]
    body = {"using": [CORE, MAIL, SUBMISSION], "methodCalls": method_calls}
    response = await jmap.http.post(
        "/jmap/api/",
        content=json.dumps(body),
        auth=jmap.auth,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    return response.json()["methodResponses"]  # type: ignore[no-any-return]


def address(jmap: Jmap) -> str:
    """The user's own address (GATEWAY_MAIL_DOMAIN), their default Identity's."""
    return f"{jmap.username}@{DOMAIN}"


async def identity_id(jmap: Jmap) -> str:
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


def sent_by(sink: Sink, jmap: Jmap) -> list[Received]:
    """What the shared sink took from this user (tests share it: each user is a test's own)."""
    return [r for r in list(sink.received) if r.mail_from == address(jmap)]


async def held_usage(client: Redis | RedisCluster, account_id: str) -> tuple[int, int]:
    """(held submissions, octets charged) of an account, read from Redis itself: the charges
    hash gateway.cache.held keeps (id -> octets, the total under "*")."""
    charges = await client.hgetall(f"jg:{{{account_id}}}:held-charges")
    total = int(charges.pop(b"*", charges.pop("*", 0)))
    return len(charges), total
