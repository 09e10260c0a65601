"""Every hostile message of tests.hostile_mail, delivered to a real Dovecot, synced and read.

The review found single messages that stalled every user: a Content-Type of 20,000
parameters for 14 s, 5,000 parts for 5.5 s, others for minutes. Here each is APPENDed with
the stdlib client and read through the gateway with every kind of property: the Email/get
answers (no error), the event loop is never kept long (the gateway runs on the test's loop,
tests.loopstall), the message downloads byte for byte as Dovecot stores it, and a part the
gateway lists is the part Dovecot numbers the same.
"""

from __future__ import annotations

import email
import imaplib
import json
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
import redis

from gateway.cache.keys import AccountKeys
from gateway.mime.limits import HEADER_SECTION_OCTETS, MAX_DEPTH, MAX_PARTS
from tests import hostile_mail
from tests.jmapclient import CORE, MAIL, Jmap
from tests.loopstall import measured_stall
from tests.servers import Dovecot
from tests.translators.mailseed import append

# The goal is under 0.1 s; this leaves room for a busy test machine, none for the seconds
# and minutes the unbounded code took.
STALL_BOUND = 1.0
PROPERTIES = [
    "blobId",
    "threadId",
    "subject",
    "from",
    "replyTo",
    "sender",
    "cc",
    "messageId",
    "inReplyTo",
    "references",
    "sentAt",
    "preview",
    "hasAttachment",
    "bodyStructure",
    "textBody",
    "htmlBody",
    "attachments",
    "bodyValues",
    "headers",
    "header:Subject:asText",
    "header:Reply-To:asGroupedAddresses",
    "header:Cc:asAddresses",
    "header:References:asMessageIds",
    "header:X-F1:asDate",
    "header:X-F1:asURLs",
    "header:Received:all",
]
BODY_PROPERTIES = ["partId", "blobId", "size", "name", "type", "charset", "disposition"]


@pytest.fixture
def stored(dovecot: Dovecot, jmap: Jmap) -> Iterator[imaplib.IMAP4]:
    client = dovecot.client(jmap.username)
    yield client
    client.logout()


def fetched(imap: imaplib.IMAP4, section: str) -> bytes:
    """A section of the user's only message, as Dovecot gives it to the stdlib client."""
    assert imap.select("INBOX", readonly=True)[0] == "OK"
    data = imap.uid("FETCH", "1:*", f"(BODY.PEEK[{section}])")[1]
    first = data[0]
    assert isinstance(first, tuple)
    return bytes(first[1])


async def email_get(jmap: Jmap, **arguments: Any) -> dict[str, Any]:
    """Email/get of every email, the answer parsed after the stall was measured: the test's
    own JSON decoding is no work of the gateway."""
    call = ["Email/get", {"accountId": jmap.account_id, "ids": None, **arguments}, "c"]
    body = json.dumps({"using": [CORE, MAIL], "methodCalls": [call]})
    async with measured_stall() as stall:
        response = await jmap.http.post(
            "/jmap/api/", content=body, auth=jmap.auth, headers={"content-type": "application/json"}
        )
    assert response.status_code == 200, response.text[:500]
    assert stall.worst < STALL_BOUND
    ((name, answer, _),) = response.json()["methodResponses"]
    assert name == "Email/get", answer
    return answer  # type: ignore[no-any-return]


def entities(part: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield part
    for child in part.get("subParts") or []:
        yield from entities(child)


@pytest.mark.parametrize("key", sorted(hostile_mail.CORPUS))
async def test_a_hostile_message_is_read_and_downloaded_whole(
    dovecot: Dovecot, jmap: Jmap, stored: imaplib.IMAP4, key: str
) -> None:
    append(dovecot, jmap.username, {key: hostile_mail.CORPUS[key]()})
    arguments: dict[str, Any] = {
        "properties": PROPERTIES,
        "bodyProperties": [*BODY_PROPERTIES, "subParts", "headers", "header:Content-Type"],
        "fetchAllBodyValues": True,
        "maxBodyValueBytes": 4096,
    }
    (found,) = (await email_get(jmap, **arguments))["list"]
    response = await jmap.http.get(
        f"/jmap/download/{jmap.account_id}/{found['blobId']}/m.eml", auth=jmap.auth
    )
    assert response.status_code == 200
    assert response.content == fetched(stored, "")
    # A second read, from what the first one cached, gives the same Email.
    assert (await email_get(jmap, **arguments))["list"] == [found]


async def test_parts_past_the_limit_are_not_listed_and_listed_ones_are_dovecots(
    dovecot: Dovecot, jmap: Jmap, stored: imaplib.IMAP4
) -> None:
    """5,000 parts: the multipart and its first 999 parts are listed, numbered and sized as
    Dovecot numbers them; the raw message holds them all."""
    message = hostile_mail.many_parts(5_000)
    append(dovecot, jmap.username, {"many_parts": message})
    answer = await email_get(
        jmap, properties=["bodyStructure"], bodyProperties=[*BODY_PROPERTIES, "subParts"]
    )
    root = answer["list"][0]["bodyStructure"]
    assert len(list(entities(root))) == MAX_PARTS
    parts = root["subParts"]
    assert [p["partId"] for p in parts] == [str(n) for n in range(1, MAX_PARTS)]
    last = parts[-1]
    assert fetched(stored, last["partId"]) == b"part"
    response = await jmap.http.get(
        f"/jmap/download/{jmap.account_id}/{last['blobId']}/p.txt", auth=jmap.auth
    )
    assert response.content == b"part" and last["size"] == len(b"part")
    # Dovecot has the part after the last one listed.
    assert fetched(stored, str(MAX_PARTS)) == b"part"


async def test_nesting_is_listed_to_the_depth_limit(dovecot: Dovecot, jmap: Jmap) -> None:
    append(dovecot, jmap.username, {"deep_multiparts": hostile_mail.deep_multiparts()})
    answer = await email_get(
        jmap, properties=["bodyStructure"], bodyProperties=["partId", "type", "subParts"]
    )
    part = answer["list"][0]["bodyStructure"]
    levels = 1
    while part["subParts"]:
        (part,) = part["subParts"]
        levels += 1
    assert levels == MAX_DEPTH + 1
    assert part["type"] == "multipart/mixed"


async def test_a_content_type_of_thousands_of_parameters_keeps_what_the_stdlib_reads(
    dovecot: Dovecot, jmap: Jmap, stored: imaplib.IMAP4
) -> None:
    """20,000 parameters (14 s of Email/get before): the charset, the first of them, is the
    one the stdlib reads from the stored message."""
    append(dovecot, jmap.username, {"many_parameters": hostile_mail.many_parameters()})
    answer = await email_get(
        jmap,
        properties=["bodyStructure", "bodyValues"],
        bodyProperties=BODY_PROPERTIES,
        fetchTextBodyValues=True,
    )
    (found,) = answer["list"]
    reference = email.message_from_bytes(fetched(stored, ""), policy=policy.default)
    assert isinstance(reference, EmailMessage)
    assert found["bodyStructure"]["charset"] == reference.get_content_charset() == "utf-8"
    assert found["bodyValues"]["1"]["value"] == "Hello.\n"


async def test_only_the_header_octets_read_are_cached(
    dovecot: Dovecot, jmap: Jmap, redis_url: str
) -> None:
    """7 MB of header fields: the header kept in Redis is the 256 KiB that is read."""
    append(dovecot, jmap.username, {"many_header_fields": hostile_mail.many_header_fields()})
    (found,) = (await email_get(jmap, properties=["headers", "subject", "bodyStructure"]))["list"]
    keys = AccountKeys(jmap.account_id)
    client = redis.Redis.from_url(redis_url)
    try:
        for kind in ("header", "fields"):
            assert client.hstrlen(keys.immutable(kind), found["id"]) <= HEADER_SECTION_OCTETS
    finally:
        client.close()
    assert sum(len(h["name"]) + len(h["value"]) + 3 for h in found["headers"]) <= (
        HEADER_SECTION_OCTETS + 2
    )
