"""Email/set create and Email/import against a real Dovecot: what is stored upstream is read
back with a plain IMAP client and parsed with the standard library."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest

from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import Mail, message, ok
from tests.translators.test_email_set import mailbox_ids

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
PDF_NAME = "Präsentation résumé.pdf"
TEXT = "Grüße aus Zürich,\nbis bald — Zoë\n"
HTML = "<p>Grüße aus <b>Zürich</b></p>"


@pytest.fixture
def mail(dovecot: Dovecot, jmap: Jmap) -> Iterator[Mail]:
    client = Mail(dovecot, jmap.username)
    yield client
    client.close()


def draft(drafts: str, blob_id: str) -> dict[str, Any]:
    return {
        "mailboxIds": {drafts: True},
        "keywords": {"$draft": True, "$seen": True},
        "from": [{"name": "Zoë Ünver", "email": "zoe@example.org"}],
        "to": [{"name": "Åsa", "email": "asa@example.org"}],
        "subject": "Grüße — 日本語の件名",
        "textBody": [{"partId": "t", "type": "text/plain"}],
        "htmlBody": [{"partId": "h", "type": "text/html"}],
        "attachments": [{"blobId": blob_id, "type": "application/pdf", "name": PDF_NAME}],
        "bodyValues": {"t": {"value": TEXT}, "h": {"value": HTML}},
    }


def only_message(mail: Mail, folder: str) -> tuple[bytes, set[str]]:
    ok(mail.imap.select(f'"{folder}"', readonly=True))
    data = ok(mail.imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])"))
    items = [i for i in data if isinstance(i, tuple)]
    assert len(items) == 1, items
    prefix, raw = items[0]
    flags = set(prefix.split(b"FLAGS (")[1].split(b")")[0].decode().split()) - {"\\Recent"}
    return bytes(raw), flags


async def test_draft_with_attachment_round_trips(jmap: Jmap, mail: Mail) -> None:
    boxes = await mailbox_ids(jmap)
    blob_id = await jmap.upload(PDF, "application/pdf")
    state = (await jmap.call("Email/get", ids=[]))["state"]

    result = await jmap.call("Email/set", create={"d1": draft(boxes["Drafts"], blob_id)})

    created = result["created"]["d1"]
    # receivedAt too: the client left it to the server (RFC 8620 5.3).
    assert set(created) == {"id", "blobId", "threadId", "size", "receivedAt"}
    raw, flags = only_message(mail, "Drafts")
    assert flags == {"\\Draft", "\\Seen"}
    assert created["size"] == len(raw)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == "Grüße — 日本語の件名"
    assert parsed["From"].addresses[0].display_name == "Zoë Ünver"
    assert parsed["Message-ID"] and parsed["Date"]
    plain = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    # Stored with CRLF line ends, which the stdlib keeps in the text it decodes.
    assert plain.replace("\r\n", "\n") == TEXT
    assert html.replace("\r\n", "\n").strip() == HTML
    (attachment,) = list(parsed.iter_attachments())
    assert attachment.get_filename() == PDF_NAME
    assert attachment.get_content() == PDF

    got = await jmap.call(
        "Email/get",
        ids=[created["id"]],
        properties=["subject", "from", "keywords", "attachments", "textBody", "bodyValues"],
        fetchTextBodyValues=True,
    )
    (obj,) = got["list"]
    assert obj["subject"] == "Grüße — 日本語の件名"
    assert obj["from"] == [{"name": "Zoë Ünver", "email": "zoe@example.org"}]
    assert obj["keywords"] == {"$draft": True, "$seen": True}
    (part,) = obj["attachments"]
    assert (part["name"], part["type"], part["size"]) == (PDF_NAME, "application/pdf", len(PDF))
    text_part = obj["textBody"][0]["partId"]
    assert obj["bodyValues"][text_part]["value"] == TEXT
    download = await jmap.http.get(
        f"/jmap/download/{jmap.account_id}/{part['blobId']}/x.pdf", auth=jmap.auth
    )
    assert download.content == PDF
    changes = await jmap.call("Email/changes", sinceState=state)
    assert changes["created"] == [created["id"]]
    drafts = (await jmap.call("Mailbox/get", ids=[boxes["Drafts"]]))["list"][0]
    assert drafts["totalEmails"] == 1


async def test_created_email_is_referenced_later_in_the_request(jmap: Jmap, mail: Mail) -> None:
    boxes = await mailbox_ids(jmap)
    body = {
        "mailboxIds": {boxes["Drafts"]: True},
        "subject": "referenced",
        "textBody": [{"partId": "t"}],
        "bodyValues": {"t": {"value": "hi"}},
    }
    responses = await jmap.request(
        ("Email/set", {"create": {"c1": body}}),
        ("Email/set", {"update": {"#c1": {"keywords/$flagged": True}}}),
    )
    created_id = responses[0][1]["created"]["c1"]["id"]
    assert responses[1][1]["updated"] == {created_id: None}
    got = await jmap.call("Email/get", ids=[created_id], properties=["keywords"])
    assert got["list"][0]["keywords"] == {"$flagged": True}
    _, flags = only_message(mail, "Drafts")
    assert flags == {"\\Flagged"}


@pytest.mark.parametrize(
    ("change", "type_"),
    [
        ({"mailboxIds": {}}, "invalidProperties"),
        ({"mailboxIds": {"nosuchbox": True}}, "invalidProperties"),
        ({"keywords": {"bad word": True}}, "invalidProperties"),
        ({"receivedAt": "yesterday"}, "invalidProperties"),
        ({"id": "x"}, "invalidProperties"),
        ({"headers": [{"name": "X-A", "value": "b"}]}, "invalidProperties"),
        ({"attachments": [{"blobId": "Unosuchblob"}]}, "blobNotFound"),
    ],
)
async def test_bad_creates_store_nothing(
    jmap: Jmap, mail: Mail, change: dict[str, Any], type_: str
) -> None:
    boxes = await mailbox_ids(jmap)
    body = {"mailboxIds": {boxes["Drafts"]: True}, "subject": "x", **change}

    result = await jmap.call("Email/set", create={"c1": body})

    error = result["notCreated"]["c1"]
    assert error["type"] == type_, error
    if type_ == "blobNotFound":
        assert error["notFound"] == ["Unosuchblob"]
    assert mail.folder("Drafts") == {}


async def test_import_keeps_the_octets_and_received_at(jmap: Jmap, mail: Mail) -> None:
    boxes = await mailbox_ids(jmap)
    raw = message("imp")
    blob_id = await jmap.upload(raw, "message/rfc822")

    result = await jmap.call(
        "Email/import",
        emails={
            "i1": {
                "blobId": blob_id,
                "mailboxIds": {boxes["Archive"]: True, boxes["INBOX"]: True},
                "keywords": {"$seen": True},
                "receivedAt": "2021-03-04T05:06:07Z",
            }
        },
    )

    created = result["created"]["i1"]
    assert created["size"] == len(raw)
    assert mail.folder("Archive") == {"imp": [{"\\Seen"}]}
    assert mail.folder("INBOX") == {"imp": [{"\\Seen"}]}
    assert mail.raw("Archive", "imp") == raw
    uid = mail.uids("Archive", "imp")[0]
    assert b'"04-Mar-2021 05:06:07 +0000"' in mail.fetch("Archive", uid, "(INTERNALDATE)")
    got = await jmap.call(
        "Email/get", ids=[created["id"]], properties=["receivedAt", "mailboxIds", "blobId"]
    )
    obj = got["list"][0]
    assert obj["receivedAt"] == "2021-03-04T05:06:07Z"
    assert obj["mailboxIds"] == {boxes["Archive"]: True, boxes["INBOX"]: True}
    download = await jmap.http.get(
        f"/jmap/download/{jmap.account_id}/{obj['blobId']}/m.eml", auth=jmap.auth
    )
    assert download.content == raw


async def test_import_refusals(jmap: Jmap, mail: Mail) -> None:
    boxes = await mailbox_ids(jmap)
    not_mail = await jmap.upload(b"\x00\x01 not a message", "application/octet-stream")
    result = await jmap.call(
        "Email/import",
        emails={
            "a": {"blobId": "Unosuchblob", "mailboxIds": {boxes["INBOX"]: True}},
            "b": {"blobId": not_mail, "mailboxIds": {boxes["INBOX"]: True}},
            "c": {"blobId": not_mail, "mailboxIds": {}},
        },
    )
    errors = result["notCreated"]
    assert errors["a"]["type"] == "invalidProperties"
    assert errors["b"]["type"] == "invalidEmail"
    assert errors["c"]["type"] in ("invalidEmail", "invalidProperties")
    assert result["created"] is None
    assert mail.folder("INBOX") == {}
    (error,) = await jmap.request(("Email/import", {"emails": {}, "ifInState": "old"}))
    assert error[1]["type"] == "stateMismatch"
