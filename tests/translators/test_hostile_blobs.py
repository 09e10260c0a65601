"""Hostile messages handed to the gateway as blobs (Email/parse, Email/import, the parts of an
upload) and read through SearchSnippet/get: bounded, and off the event loop.

The review found Email/parse of an upload of 250,000 parts taking 13.7 s of the loop; the
Received fields of an imported message were read by the stdlib's full header parser (21 s for
200,000 fields). The gateway runs on the test's loop, so tests.loopstall sees its stalls.
"""

from __future__ import annotations

import email
import json
from email import policy
from email.message import EmailMessage
from typing import Any

from gateway.mime.limits import MAX_PARTS
from tests import hostile_mail
from tests.jmapclient import CORE, MAIL, Jmap
from tests.loopstall import measured_stall
from tests.servers import Dovecot
from tests.translators.mailseed import append

# See tests/translators/test_hostile_email_get.py.
STALL_BOUND = 1.0


async def call(jmap: Jmap, name: str, **arguments: Any) -> dict[str, Any]:
    """One method call, its answer parsed after the stall was measured."""
    method = [name, {"accountId": jmap.account_id, **arguments}, "c"]
    body = json.dumps({"using": [CORE, MAIL], "methodCalls": [method]})
    async with measured_stall() as stall:
        response = await jmap.http.post(
            "/jmap/api/", content=body, auth=jmap.auth, headers={"content-type": "application/json"}
        )
    assert response.status_code == 200, response.text[:500]
    assert stall.worst < STALL_BOUND
    ((answered, answer, _),) = response.json()["methodResponses"]
    assert answered == name, answer
    return answer  # type: ignore[no-any-return]


async def test_parsing_an_upload_of_250000_parts_lists_the_first_ones(jmap: Jmap) -> None:
    blob_id = await jmap.upload(hostile_mail.upload_many_parts(), "message/rfc822")
    answer = await call(
        jmap,
        "Email/parse",
        blobIds=[blob_id],
        properties=["bodyStructure", "textBody", "preview"],
        bodyProperties=["partId", "type", "subParts"],
    )
    root = answer["parsed"][blob_id]["bodyStructure"]
    assert len(root["subParts"]) == MAX_PARTS - 1
    assert answer["parsed"][blob_id]["preview"] == ""


async def test_a_part_of_a_large_upload_downloads_as_the_stdlib_decodes_it(jmap: Jmap) -> None:
    message = hostile_mail.many_parts(5_000)
    blob_id = await jmap.upload(message, "message/rfc822")
    answer = await call(
        jmap,
        "Email/parse",
        blobIds=[blob_id],
        properties=["attachments", "textBody"],
        bodyProperties=["partId", "blobId"],
    )
    parsed = answer["parsed"][blob_id]
    last = parsed["textBody"][-1]
    assert last["partId"] == str(MAX_PARTS - 1)
    async with measured_stall() as stall:
        response = await jmap.http.get(
            f"/jmap/download/{jmap.account_id}/{last['blobId']}/p.txt", auth=jmap.auth
        )
    assert stall.worst < STALL_BOUND
    reference = email.message_from_bytes(message, policy=policy.default)
    assert isinstance(reference, EmailMessage)
    parts = reference.get_payload()
    assert isinstance(parts, list)
    assert response.content == parts[MAX_PARTS - 2].get_payload(decode=True)


async def test_importing_a_message_of_200000_header_fields(jmap: Jmap) -> None:
    message = hostile_mail.many_header_fields()
    blob_id = await jmap.upload(message, "message/rfc822")
    inbox = next(m["id"] for m in (await jmap.mailboxes()).values() if m["role"] == "inbox")
    answer = await call(
        jmap, "Email/import", emails={"i": {"blobId": blob_id, "mailboxIds": {inbox: True}}}
    )
    created = answer["created"]["i"]
    # RFC 8621 4.8: receivedAt defaults to the latest Received field's date.
    got = await call(jmap, "Email/get", ids=[created["id"]], properties=["receivedAt", "size"])
    assert got["list"] == [
        {"id": created["id"], "receivedAt": "2024-07-01T10:00:00Z", "size": len(message)}
    ]


async def test_a_snippet_of_a_huge_html_body(dovecot: Dovecot, jmap: Jmap) -> None:
    append(dovecot, jmap.username, {"huge_html": hostile_mail.huge_html()})
    (email_id,) = (await call(jmap, "Email/query"))["ids"]
    answer = await call(jmap, "SearchSnippet/get", emailIds=[email_id], filter={"body": "té"})
    (snippet,) = answer["list"]
    assert snippet["preview"] is not None and "<mark>té</mark>" in snippet["preview"]
    assert len(snippet["preview"].encode()) <= 255
