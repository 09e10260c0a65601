"""Email/parse (RFC 8621 4.9) of uploads and of stored messages and parts, against the stdlib.

Messages are built with the stdlib ``email`` package and the expected values come from the
stdlib's own parse of the same octets (``tests.mailtruth`` and ``email.message``), never from
the gateway's code. Every part blob id Email/parse reports is downloaded and compared with
the stdlib's decoded payload of that part.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import httpx
import pytest

from gateway.translators.email.blob_read import message_structure
from tests.conftest import fresh_jmap, gateway_settings, running_gateway
from tests.jmapclient import Jmap
from tests.mailcorpus import CORPUS
from tests.mailtruth import expected, leaves
from tests.servers import Dovecot
from tests.translators.mailseed import append

# RFC 8621 4.9: the properties Email/parse returns when the client names none.
SPEC_DEFAULT_PROPERTIES = [
    *("messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc"),
    *("replyTo", "subject", "sentAt", "hasAttachment", "preview", "bodyValues"),
    *("textBody", "htmlBody", "attachments"),
]
# Compared with tests.mailtruth's values as they are.
TRUTH_PROPERTIES = (
    *("subject", "from", "to", "cc", "replyTo", "sender", "messageId", "inReplyTo"),
    *("references", "sentAt", "size", "hasAttachment"),
)
METADATA = ("id", "blobId", "threadId", "mailboxIds", "keywords", "receivedAt", "size")
BODY_PROPERTIES = ["partId", "blobId", "size", "name", "type", "disposition"]


# --- Messages built with the stdlib ----------------------------------------------------------


def _headed(subject: str, **fields: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Jürgen Müller <juergen@example.org>"
    message["To"] = "Ana <ana@example.com>, bob@example.net"
    message["Cc"] = "Zoë <zoe@example.com>"
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime(2024, 3, 5, 9, 30, tzinfo=UTC))
    message["Message-ID"] = make_msgid(domain="example.org")
    for name, value in fields.items():
        message[name.replace("_", "-")] = value
    return message


def text_message() -> EmailMessage:
    message = _headed(
        "Grüße aus Köln", In_Reply_To="<a1@example.org>", References="<a0@x> <a1@example.org>"
    )
    message.set_content("Hallo Ana,\n\nbis morgen um 10.\nJürgen\n")
    return message


def alternative_message() -> EmailMessage:
    message = _headed("Newsletter: März")
    message.set_content("Plain words, €5 only.\n")
    message.add_alternative("<html><body><p>HTML words, &euro;5 only.</p></body></html>\n", "html")
    return message


def attachments_message() -> EmailMessage:
    message = _headed("Unterlagen")
    message.set_content("Anbei die Dateien.\n")
    message.add_attachment(
        b"%PDF-1.4 fake\x00\xff", "application", "pdf", filename="Übersicht März.pdf"
    )
    message.add_attachment(bytes(range(256)), "image", "png", filename="фото.png")
    message.add_attachment("Zeile 1\nZeile 2\n", filename="notizen_ü.txt")
    return message


def forwarded_message() -> EmailMessage:
    inner = _headed("Ursprüngliche Nachricht", Reply_To="Büro <office@example.org>")
    inner.set_content("Der Text von damals.\n")
    inner.add_alternative("<p>Der Text von <b>damals</b>.</p>\n", "html")
    inner.add_attachment(
        b"\x00\x01binary\xfe", "application", "octet-stream", filename="Daten é.bin"
    )
    outer = _headed("Fwd: Ursprüngliche Nachricht")
    outer.set_content("Siehe unten.\n")
    outer.add_attachment(inner)
    return outer


BUILT = {
    "text": text_message,
    "alternative": alternative_message,
    "attachments": attachments_message,
    "forwarded": forwarded_message,
}


def octets(message: EmailMessage) -> bytes:
    """The message as it goes over the wire: CRLF line ends."""
    return message.as_bytes(policy=policy.SMTP)


def stdlib(raw: bytes) -> EmailMessage:
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def top_leaves(raw: bytes) -> list[EmailMessage]:
    """The non-multipart parts in order, attached messages as one part (as bodyStructure)."""
    return [part for part, _, _ in leaves(stdlib(raw))]


def is_message(part: EmailMessage) -> bool:
    return part.get_content_type() in ("message/rfc822", "message/global")


def attached(part: EmailMessage) -> EmailMessage:
    """The message a message/rfc822 part holds."""
    (inner,) = part.get_payload()
    assert isinstance(inner, EmailMessage)
    return inner


# --- Calls -------------------------------------------------------------------------------------


async def parse(jmap: Jmap, *blob_ids: str, **args: Any) -> dict[str, Any]:
    return await jmap.call("Email/parse", blobIds=list(blob_ids), **args)


async def download(jmap: Jmap, blob_id: str) -> httpx.Response:
    return await jmap.http.get(
        f"/jmap/download/{jmap.account_id}/{blob_id}/x?accept=application/octet-stream",
        auth=jmap.auth,
    )


def body_leaves(part: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if part.get("subParts"):
        for child in part["subParts"]:
            yield from body_leaves(child)
    else:
        yield part


async def assert_parts_download_as_stdlib(jmap: Jmap, email: dict[str, Any], raw: bytes) -> None:
    """Every leaf of bodyStructure downloads as the stdlib's decoded payload of that part."""
    parts = list(body_leaves(email["bodyStructure"]))
    sources = top_leaves(raw)
    assert [p["type"] for p in parts] == [s.get_content_type() for s in sources]
    for part, source in zip(parts, sources, strict=True):
        response = await download(jmap, part["blobId"])
        assert response.status_code == 200, part
        assert part["size"] == len(response.content)
        if is_message(source):
            # RFC 8621 4.1.4: an attached message's blob is the message itself.
            assert stdlib(response.content).items() == attached(source).items()
        else:
            assert response.content == source.get_payload(decode=True), part


# --- Tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(BUILT))
async def test_built_messages_against_the_stdlib(jmap: Jmap, key: str) -> None:
    raw = octets(BUILT[key]())
    blob_id = await jmap.upload(raw, "message/rfc822")
    properties = [*TRUTH_PROPERTIES, *METADATA, "bodyStructure", "textBody", "htmlBody"]
    found = await parse(
        jmap,
        blob_id,
        properties=[*properties, "attachments", "bodyValues", "preview"],
        bodyProperties=[*BODY_PROPERTIES, "subParts"],
        fetchTextBodyValues=True,
        fetchHTMLBodyValues=True,
    )
    assert found["notFound"] is None and found["notParsable"] is None
    email = found["parsed"][blob_id]
    truth = expected(raw)
    assert not set(TRUTH_PROPERTIES) & truth["uncertain"]
    assert {p: email[p] for p in TRUTH_PROPERTIES} == {p: truth[p] for p in TRUTH_PROPERTIES}
    # RFC 8621 4.9: a blob has no metadata but its own id and size.
    assert {p: email[p] for p in METADATA} == {
        **dict.fromkeys(("id", "threadId", "mailboxIds", "keywords", "receivedAt")),
        "blobId": blob_id,
        "size": len(raw),
    }
    message = stdlib(raw)
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    values = email["bodyValues"]
    assert plain is not None
    assert [values[p["partId"]]["value"] for p in email["textBody"]] == [
        plain.get_content().replace("\r\n", "\n")
    ]
    assert [values[p["partId"]]["value"] for p in email["htmlBody"]] == [
        (html or plain).get_content().replace("\r\n", "\n")
    ]
    assert all(not v["isTruncated"] and not v["isEncodingProblem"] for v in values.values())
    assert email["preview"] == " ".join(plain.get_content().split())
    attached = [p for p in top_leaves(raw) if p.get_content_disposition() == "attachment"]
    assert [(a["name"], a["type"]) for a in email["attachments"]] == [
        (p.get_filename(), p.get_content_type()) for p in attached
    ]
    assert email["hasAttachment"] == bool(attached)
    await assert_parts_download_as_stdlib(jmap, email, raw)


async def test_default_properties(jmap: Jmap) -> None:
    blob_id = await jmap.upload(octets(attachments_message()), "message/rfc822")
    email = (await parse(jmap, blob_id))["parsed"][blob_id]
    assert list(email) == SPEC_DEFAULT_PROPERTIES
    # RFC 8621 4.9: bodyProperties default as Email/get's.
    assert list(email["attachments"][0]) == [
        *("partId", "blobId", "size", "name", "type", "charset", "disposition", "cid"),
        *("language", "location"),
    ]
    # No fetch*BodyValues: bodyValues is empty.
    assert email["bodyValues"] == {}


async def test_corpus_against_the_stdlib(jmap: Jmap) -> None:
    """The hostile corpus (bad charsets, broken encodings, odd headers) parsed from uploads."""
    blob_ids = {key: await jmap.upload(raw, "message/rfc822") for key, raw in CORPUS.items()}
    found = await parse(
        jmap,
        *blob_ids.values(),
        properties=[*TRUTH_PROPERTIES, "textBody", "attachments", "bodyValues"],
        bodyProperties=BODY_PROPERTIES,
        fetchTextBodyValues=True,
    )
    assert found["notFound"] is None and found["notParsable"] is None
    mismatches = []
    for key, raw in CORPUS.items():
        email = found["parsed"][blob_ids[key]]
        truth = expected(raw)
        got = {p: email[p] for p in TRUTH_PROPERTIES if p not in truth["uncertain"]}
        want = {p: truth[p] for p in TRUTH_PROPERTIES if p not in truth["uncertain"]}
        plain = [part for part in email["textBody"] if part["type"] == "text/plain"]
        if "textBodyText" not in truth["uncertain"]:
            got["text"] = email["bodyValues"][plain[0]["partId"]]["value"] if plain else None
            want["text"] = truth["textBodyText"]
        got["names"] = [a["name"] for a in email["attachments"] if a["disposition"] == "attachment"]
        want["names"] = truth["attachmentNames"]
        if got != want:
            mismatches.append((key, got, want))
    assert mismatches == []


async def test_body_value_options(jmap: Jmap) -> None:
    raw = octets(alternative_message())
    blob_id = await jmap.upload(raw, "message/rfc822")
    message = stdlib(raw)
    html = message.get_body(("html",))
    assert html is not None
    found = await parse(
        jmap, blob_id, properties=["bodyValues"], fetchAllBodyValues=True, maxBodyValueBytes=12
    )
    values = found["parsed"][blob_id]["bodyValues"]
    assert set(values) == {"1", "2"}
    for value in values.values():
        assert value["isTruncated"] and len(value["value"].encode()) <= 12
    # RFC 8621 4.2: text/html is not cut inside a tag.
    assert html.get_content().startswith(values["2"]["value"])
    assert "<" not in values["2"]["value"].rsplit(">", 1)[-1]
    only_html = await parse(jmap, blob_id, properties=["bodyValues"], fetchHTMLBodyValues=True)
    assert set(only_html["parsed"][blob_id]["bodyValues"]) == {"2"}


async def test_header_forms_and_property_names(jmap: Jmap) -> None:
    raw = octets(text_message())
    blob_id = await jmap.upload(raw, "message/rfc822")
    properties = ["header:SUBJECT:asText", "header:from:asAddresses:all", "headers"]
    email = (await parse(jmap, blob_id, properties=properties))["parsed"][blob_id]
    # RFC 8621 4.9: header properties come back exactly as asked, and nothing else.
    assert list(email) == properties
    message = stdlib(raw)
    assert email["header:SUBJECT:asText"] == message["Subject"]
    assert email["header:from:asAddresses:all"] == [
        [{"name": "Jürgen Müller", "email": "juergen@example.org"}]
    ]
    assert [h["name"] for h in email["headers"]] == list(message.keys())


async def test_attached_message_of_a_stored_email(jmap: Jmap, dovecot: Dovecot) -> None:
    """A message/rfc822 part's parts are the upstream's sections below it (RFC 3501 6.4.5):
    their blob ids are ordinary part blob ids, streamed from the upstream."""
    raw = octets(forwarded_message())
    append(dovecot, jmap.username, {"forwarded": raw})
    (stored,) = (await jmap.call("Email/get", ids=None, properties=["attachments"]))["list"]
    (attachment,) = stored["attachments"]
    assert attachment["type"] == "message/rfc822"
    outer_part = attachment["partId"]
    found = await parse(
        jmap,
        attachment["blobId"],
        properties=["subject", "from", "replyTo", "bodyStructure", "attachments", "size"],
        bodyProperties=[*BODY_PROPERTIES, "subParts"],
    )
    email = found["parsed"][attachment["blobId"]]
    # The attached message's octets, as the upstream holds them.
    inner_raw = (await download(jmap, attachment["blobId"])).content
    truth = expected(inner_raw)
    for prop in ("subject", "from", "replyTo"):
        assert email[prop] == truth[prop]
    assert email["size"] == attachment["size"] == len(inner_raw)
    prefix = f"P{stored['id']}_{outer_part}-"
    for part in body_leaves(email["bodyStructure"]):
        assert part["blobId"] == prefix + part["partId"].replace(".", "-")
    (data,) = email["attachments"]
    assert data["name"] == "Daten é.bin"
    response = await download(jmap, data["blobId"])
    assert response.status_code == 200
    (payload,) = stdlib(inner_raw).iter_attachments()
    assert response.content == payload.get_payload(decode=True)
    await assert_parts_download_as_stdlib(jmap, email, inner_raw)


async def test_message_attached_as_octets_gets_parts_of_its_own(
    jmap: Jmap, dovecot: Dovecot
) -> None:
    """An .eml sent as application/octet-stream (base64): the upstream does not look into it,
    so its parts are cut from the attachment; and an attached message of a parsed upload
    can be parsed in turn."""
    inner_raw = octets(forwarded_message())
    outer = _headed("An .eml file")
    outer.set_content("See the file.\n")
    outer.add_attachment(inner_raw, "application", "octet-stream", filename="weiter.eml")
    append(dovecot, jmap.username, {"eml": octets(outer)})
    (stored,) = (await jmap.call("Email/get", ids=None, properties=["attachments"]))["list"]
    (attachment,) = stored["attachments"]
    properties = ["subject", "bodyStructure", "attachments"]
    body = [*BODY_PROPERTIES, "subParts"]
    found = await parse(jmap, attachment["blobId"], properties=properties, bodyProperties=body)
    email = found["parsed"][attachment["blobId"]]
    assert email["subject"] == "Fwd: Ursprüngliche Nachricht"
    await assert_parts_download_as_stdlib(jmap, email, inner_raw)
    # The forwarded message inside it, parsed from its S blob id, and its parts downloaded.
    (forwarded,) = email["attachments"]
    again = await parse(jmap, forwarded["blobId"], properties=properties, bodyProperties=body)
    nested = again["parsed"][forwarded["blobId"]]
    assert nested["subject"] == "Ursprüngliche Nachricht"
    nested_raw = (await download(jmap, forwarded["blobId"])).content
    assert stdlib(nested_raw).items() == attached(stdlib(inner_raw).get_payload()[1]).items()
    await assert_parts_download_as_stdlib(jmap, nested, nested_raw)


async def test_whole_stored_message_agrees_with_email_get(jmap: Jmap, dovecot: Dovecot) -> None:
    append(dovecot, jmap.username, {"attachments": octets(attachments_message())})
    properties = [*TRUTH_PROPERTIES, "blobId", "bodyStructure", "textBody", "attachments"]
    body = ["partId", "blobId", "size", "name", "type", "charset", "disposition", "subParts"]
    (stored,) = (
        await jmap.call("Email/get", ids=None, properties=properties, bodyProperties=body)
    )["list"]
    found = await parse(jmap, stored["blobId"], properties=properties, bodyProperties=body)
    email = found["parsed"][stored["blobId"]]
    # Same message, same parts, same part blob ids (the upstream's sections).
    assert email == {p: stored[p] for p in properties}


async def test_not_found_and_not_parsable(jmap: Jmap, dovecot: Dovecot) -> None:
    append(dovecot, jmap.username, {"text": octets(text_message())})
    (stored,) = (await jmap.call("Email/get", ids=None, properties=["textBody"]))["list"]
    not_messages = [
        await jmap.upload(bytes(range(256)) * 4, "image/png"),
        await jmap.upload(b"Just a line of text.\nAnd another: with a colon.\n", "text/plain"),
        await jmap.upload(b"", "text/plain"),
        await jmap.upload(b"\r\nA body without a header section.\r\n", "text/plain"),
        await jmap.upload(b" Subject: folded before any field\r\n\r\nbody\r\n", "text/plain"),
        # A text part of a stored email, which is no message either.
        stored["textBody"][0]["blobId"],
    ]
    # RFC 5322 3.5: the body is optional, so a header section alone is a message.
    header_only = await jmap.upload(
        b"Subject: only a header\r\nFrom: a@example.com\r\n", "message/rfc822"
    )
    unknown = ["Unothere", "Mnothere", "Pnothere_1", "Snothere_1", "S" + not_messages[1] + "_1"]
    found = await parse(jmap, *not_messages, header_only, *unknown, properties=["subject"])
    assert found == {
        "accountId": jmap.account_id,
        "parsed": {header_only: {"subject": "only a header"}},
        "notParsable": not_messages,
        "notFound": unknown,
    }
    # Each list is null when empty, and a blob named twice is parsed once.
    found = await parse(jmap, header_only, header_only, properties=["subject"])
    assert found["notParsable"] is None and found["notFound"] is None
    assert list(found["parsed"]) == [header_only]


async def test_a_message_over_the_upload_limit_is_not_parsable(
    dovecot: Dovecot, redis_url: str
) -> None:
    settings = gateway_settings(dovecot.url, redis_url, max_size_upload=2000)
    async with running_gateway(settings) as base, httpx.AsyncClient(base_url=base) as http:
        jmap = await fresh_jmap(dovecot, http)
        big = text_message()
        big.set_content("x" * 3000 + "\n")
        small = text_message()
        append(dovecot, jmap.username, {"big": octets(big), "small": octets(small)})
        listed = (await jmap.call("Email/get", ids=None, properties=["blobId", "size"]))["list"]
        by_size = {e["size"] > 2000: e["blobId"] for e in listed}
        found = await parse(jmap, by_size[True], by_size[False], properties=["size"])
        assert found["notParsable"] == [by_size[True]]
        assert list(found["parsed"]) == [by_size[False]]


async def test_another_users_blobs_are_not_found(dovecot: Dovecot, http: httpx.AsyncClient) -> None:
    alice = await fresh_jmap(dovecot, http)
    bob = await fresh_jmap(dovecot, http)
    raw = octets(attachments_message())
    uploaded = await alice.upload(raw, "message/rfc822")
    append(dovecot, alice.username, {"attachments": raw})
    (stored,) = (await alice.call("Email/get", ids=None, properties=["blobId"]))["list"]
    found = await parse(alice, uploaded, properties=["attachments"])
    part_ids = [a["blobId"] for a in found["parsed"][uploaded]["attachments"]]
    assert all(p.startswith("S") for p in part_ids)
    foreign = [uploaded, stored["blobId"], *part_ids]
    found = await parse(bob, *foreign, properties=["subject"])
    assert found["parsed"] is None and found["notFound"] == foreign
    for blob_id in part_ids:
        assert (await download(bob, blob_id)).status_code == 404
        assert (await download(alice, blob_id)).status_code == 200


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"blobIds": "Uabc"},
        {"blobIds": ["not an id!"]},
        {"blobIds": [], "ids": ["x"]},
        {"blobIds": [], "properties": ["subject", "colour"]},
        {"blobIds": [], "properties": ["header:From:asDate"]},
        {"blobIds": [], "properties": "subject"},
        {"blobIds": [], "bodyProperties": ["partId", "colour"]},
        {"blobIds": [], "fetchTextBodyValues": "yes"},
        {"blobIds": [], "maxBodyValueBytes": -1},
    ],
)
async def test_invalid_arguments(jmap: Jmap, arguments: dict[str, Any]) -> None:
    (response,) = await jmap.request(("Email/parse", arguments))
    assert response[0] == "error", response
    assert response[1]["type"] == "invalidArguments", response


async def test_nothing_to_parse(jmap: Jmap) -> None:
    assert await parse(jmap) == {
        "accountId": jmap.account_id,
        "parsed": None,
        "notParsable": None,
        "notFound": None,
    }


@pytest.mark.parametrize(
    ("data", "is_message"),
    [
        (b"Subject: x\r\n\r\nbody", True),
        (b"Subject: x\n folded\nFrom : a@b\n\nbody", True),
        (b"Subject: x", True),
        (b"Subject: x\r\nnot a field\r\n\r\nbody", False),
        (b"\x89PNG\r\n\x1a\n", False),
        (b"", False),
        (b"\r\n\r\nbody", False),
    ],
)
def test_what_is_a_message(data: bytes, is_message: bool) -> None:
    assert (message_structure(data) is not None) == is_message


async def test_more_blobs_than_max_objects_in_get(jmap: Jmap) -> None:
    (response,) = await jmap.request(("Email/parse", {"blobIds": ["Ux"] * 501}))
    assert response[1]["type"] == "requestTooLarge", response
