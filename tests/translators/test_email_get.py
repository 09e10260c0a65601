"""Email/get against a real Dovecot and a real Cyrus, checked with the stdlib alone.

Every test runs on both servers. Messages are APPENDed with the stdlib IMAP client, read back
with it, and the ground truth (``tests.mailtruth.expected``, the raw header split and the MIME
sections below) is computed on the octets the server holds: Cyrus replaces 8-bit octets in a
message's top-level header fields with "X" on APPEND, and refuses a header line without a
colon ("NO Message contains invalid header"), so two checks here are Dovecot's only.

partIds are IMAP section numbers, so the parts the gateway reports are checked against the
server's own ``BODY[<partId>.MIME]`` and ``BODY[<partId>]``.
"""

from __future__ import annotations

import base64
import binascii
import imaplib
import logging
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

import gateway.translators.email.values as values_module
from gateway.app import create_app
from tests.conftest import fresh_jmap, gateway_settings, running_gateway
from tests.cyrus import Cyrus
from tests.jmapclient import Jmap
from tests.mailcorpus import CORPUS, INTERNALDATES
from tests.mailtruth import decode_text, expected, last_raw
from tests.servers import Dovecot
from tests.translators.mailseed import append, email_ids, seed
from tests.translators.witness import Witness
from tests.upstream_log import upstream_commands

SERVERS = ["dovecot", "cyrus"]
# RFC 8621 4.2: the EmailBodyPart properties returned when bodyProperties is not given.
DEFAULT_BODY_PROPERTIES = [
    "partId",
    "blobId",
    "size",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
]
# Properties compared with tests.mailtruth's values as they are.
TRUTH_PROPERTIES = (
    "subject",
    "from",
    "to",
    "cc",
    "replyTo",
    "sender",
    "messageId",
    "inReplyTo",
    "references",
    "sentAt",
    "size",
    "hasAttachment",
)
BODY_PROPERTIES = ("textBody", "attachments", "bodyValues")
LIST_VIEW = ["from", "subject", "receivedAt", "keywords", "preview"]


def crlf(text: bytes) -> bytes:
    assert b"\r" not in text
    return text.replace(b"\n", b"\r\n")


# --- Messages of this module, besides the corpus ------------------------------------------------

# Header fields in every form: two folded Received fields, a List-Unsubscribe of two URLs on
# two lines, a To with a group, a Subject with an encoded word and a fold.
FORMS = crlf(b"""\
X-Corpus-Key: forms
Received: from mx.example.net (mx.example.net [192.0.2.1])
\tby mail.example.org with ESMTPS id abc123
\tfor <bob@example.net>; Mon, 04 Mar 2024 10:00:02 +0100
Received: from client.example.com ([198.51.100.7])
 by mx.example.net with ESMTP id def456; Mon, 04 Mar 2024 10:00:01 +0100
From: "Doe, Jane" <jane@example.com>
To: Team: one@example.org, "Two" <two@example.org>;, three@example.org
Subject: =?utf-8?q?Header_forms?= and a
 folded line
Date: Mon, 04 Mar 2024 10:00:00 +0100
Message-ID: <forms.20240304@corpus.example>
List-Unsubscribe: <mailto:leave@lists.example.net?subject=unsubscribe>,
 <https://lists.example.net/leave?u=1&l=2>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Header forms.
""")

# Multiparts three deep: 1.1 is the text, 1.2.1 the HTML, 1.2.2 its image, 2 an attachment.
NESTED_MULTIPART = crlf(b"""\
X-Corpus-Key: nested_multipart
From: Alice Example <alice@example.org>
To: bob@example.net
Subject: Nested multiparts
Date: Tue, 05 Mar 2024 10:00:00 +0100
Message-ID: <nested-multipart.20240305@corpus.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="m-1"

--m-1
Content-Type: multipart/alternative; boundary="a-1"

--a-1
Content-Type: text/plain; charset=utf-8

Plain.
--a-1
Content-Type: multipart/related; boundary="r-1"

--r-1
Content-Type: text/html; charset=utf-8

<p>HTML <img src="cid:dot@corpus.example"></p>
--r-1
Content-Type: image/gif
Content-ID: <dot@corpus.example>
Content-Transfer-Encoding: base64

R0lGODlhAQABAIAAAP///wAAACwAAAAAAQABAAACAkQBADs=
--r-1--
--a-1--
--m-1
Content-Type: application/zip; name="empty.zip"
Content-Disposition: attachment; filename="empty.zip"
Content-Transfer-Encoding: base64

UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==
--m-1--
""")

# Text with 1-, 2-, 3- and 4-octet UTF-8 characters, so most cuts fall inside one; about
# 12 KB, so a maxBodyValueBytes up to 2500 makes the gateway fetch only the start of a part.
LONG_TEXT = "".join(f"{n:03d} ab\u00e9\u20ac\U0001f600 \u00e9\u00e9\u20ac\n" for n in range(500))
LONG_HTML = "".join(f'<p class="n{n:03d}">\u00e9\u20ac<b>\U0001f600</b></p>\n' for n in range(300))


def _text_message(key: str, content_type: bytes, encoding: bytes, body: bytes) -> bytes:
    head = crlf(
        b"X-Corpus-Key: %s\nFrom: a@example.org\nTo: b@example.org\nSubject: Long %s\n"
        b"Date: Wed, 06 Mar 2024 10:00:00 +0100\nMessage-ID: <%s@corpus.example>\n"
        b"MIME-Version: 1.0\nContent-Type: %s\nContent-Transfer-Encoding: %s\n\n"
        % (key.encode(), key.encode(), key.encode(), content_type, encoding)
    )
    return head + body


def _base64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _lf_to_crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


LONG: dict[str, bytes] = {
    "long_8bit": _text_message(
        "long_8bit", b"text/plain; charset=utf-8", b"8bit", _lf_to_crlf(LONG_TEXT).encode()
    ),
    "long_base64": _text_message(
        "long_base64",
        b"text/plain; charset=utf-8",
        b"base64",
        _base64(_lf_to_crlf(LONG_TEXT).encode()),
    ),
    # Soft line breaks every 76 characters; hard ones as CRLF.
    "long_qp": _text_message(
        "long_qp",
        b"text/plain; charset=utf-8",
        b"quoted-printable",
        binascii.b2a_qp(LONG_TEXT.encode()).replace(b"\n", b"\r\n"),
    ),
    "long_html": _text_message(
        "long_html", b"text/html; charset=utf-8", b"8bit", _lf_to_crlf(LONG_HTML).encode()
    ),
}
# 5000 ASCII characters in UTF-32 (four octets each), base64: 26 KB for 5000 octets of value.
UTF32_TEXT = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLM\n" * 100
UTF32 = _text_message(
    "long_utf32",
    b"text/plain; charset=utf-32",
    b"base64",
    _base64(_lf_to_crlf(UTF32_TEXT).encode("utf-32")),
)

# A header line without a colon in the middle of the header section: Dovecot stores it,
# Cyrus refuses it on APPEND.
NO_COLON = b"""\
X-Corpus-Key: %s
From: a@example.org
Bad line without a colon
Subject: After the bad line
Date: Fri, 01 Mar 2024 09:00:00 +0100

body
"""


# --- Fixtures and helpers ------------------------------------------------------------------------


@dataclass
class Served:
    """A fresh account on one of the servers, and the gateway in front of it."""

    kind: str
    server: Dovecot | Cyrus
    jmap: Jmap

    def seed(self, messages: dict[str, bytes] = CORPUS) -> dict[str, bytes]:
        return seed(self.server, self.jmap.username, messages)


@pytest.fixture(params=SERVERS)
def served(request: pytest.FixtureRequest) -> Served:
    kind: str = request.param
    server = request.getfixturevalue(kind)
    jmap = request.getfixturevalue("jmap" if kind == "dovecot" else "cyrus_jmap")
    assert isinstance(server, Dovecot | Cyrus) and isinstance(jmap, Jmap)
    return Served(kind, server, jmap)


async def every_email_id(jmap: Jmap) -> list[str]:
    """Every email id, from Email/query's by-date index (no header fetch). Email/changes
    from the epoch's start cannot answer this: the first indexing keeps no change log."""
    ids: list[str] = []
    while True:
        page = await jmap.call("Email/query", position=len(ids), calculateTotal=True)
        ids += page["ids"]
        if not page["ids"] or len(ids) >= page["total"]:
            break
    # Ends as Email/changes always did: its catch-up's own LIST, nothing left selected.
    state = (await jmap.call("Email/get", ids=[], properties=["id"]))["state"]
    changes = await jmap.call("Email/changes", sinceState=state)
    assert changes["created"] == changes["updated"] == changes["destroyed"] == []
    return ids


async def get(jmap: Jmap, ids: Iterable[str], properties: list[str], **args: Any) -> Any:
    """Email/get's list as a dict by id (every id must be found)."""
    wanted = list(ids)
    result = await jmap.call("Email/get", ids=wanted, properties=properties, **args)
    assert result["notFound"] == [], result["notFound"]
    return {email["id"]: email for email in result["list"]}


def utc(internaldate: str) -> str:
    when = datetime.strptime(internaldate, "%d-%b-%Y %H:%M:%S %z")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def raw_fields(raw: bytes) -> list[tuple[str, bytes]]:
    """The header fields of a message or MIME header: (name, octets after the colon, folds
    kept, final CRLF dropped), split by hand on the RFC 5322 2.2 rules."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    fields: list[tuple[str, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        elif line:
            name_octets, colon, value = line.partition(b":")
            assert colon, line
            fields.append((name_octets.rstrip(b" \t").decode("ascii"), value))
    return fields


def raw_values(raw: bytes, name: str) -> list[str]:
    return [v.decode() for n, v in raw_fields(raw) if n.lower() == name.lower()]


def grouped(message: EmailMessage, field: str) -> list[dict[str, Any]]:
    """RFC 8621 4.1.2.4 GroupedAddresses by the stdlib: a run of mailboxes outside any group
    is one group named null (the stdlib gives each its own group)."""
    header = message[field]
    assert isinstance(header, AddressHeader)
    groups: list[dict[str, Any]] = []
    for group in header.groups:
        addresses = [
            {"name": a.display_name or None, "email": a.addr_spec} for a in group.addresses
        ]
        if group.display_name is None and groups and groups[-1]["name"] is None:
            groups[-1]["addresses"].extend(addresses)
        else:
            groups.append({"name": group.display_name, "addresses": addresses})
    return groups


def uid_of(imap: imaplib.IMAP4, key: str) -> str:
    """The UID of the corpus message ``key`` in the selected folder."""
    status, data = imap.uid("SEARCH", "HEADER", "X-Corpus-Key", key)
    assert status == "OK", data
    (uid,) = data[0].split()
    return str(uid.decode())


class Sections:
    """The MIME sections of messages in INBOX as the server itself numbers them."""

    def __init__(self, server: Dovecot | Cyrus, user: str) -> None:
        self.imap: imaplib.IMAP4 = server.client(user)
        self.imap.select("INBOX", readonly=True)

    def __enter__(self) -> Sections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.imap.logout()

    def uid(self, key: str) -> str:
        return uid_of(self.imap, key)

    def section(self, uid: str, section: str) -> bytes:
        status, data = self.imap.uid("FETCH", uid, f"(BODY.PEEK[{section}])")
        assert status == "OK", data
        item = data[0]
        assert isinstance(item, tuple), data
        body = item[1]
        assert isinstance(body, bytes)
        return body


def leaves(part: dict[str, Any]) -> list[dict[str, Any]]:
    if part.get("subParts") is None:
        return [part]
    return [leaf for child in part["subParts"] for leaf in leaves(child)]


def shape(part: dict[str, Any]) -> Any:
    """A bodyStructure as (partId, type) pairs, subParts as nested lists."""
    if part["subParts"] is None:
        return (part["partId"], part["type"])
    return (part["partId"], part["type"], [shape(child) for child in part["subParts"]])


# --- 1, 2: every corpus message against the stdlib ----------------------------------------------


async def ids_by_received_at(jmap: Jmap) -> dict[str, str]:
    """Corpus key -> email id, told apart by receivedAt (each has its own INTERNALDATE): an
    index property, so nothing is fetched."""
    keys = {utc(date): key for key, date in INTERNALDATES.items()}
    listed = await jmap.call("Email/get", ids=None, properties=["receivedAt"])
    return {keys[email["receivedAt"]]: email["id"] for email in listed["list"]}


@pytest.mark.parametrize("first", ["header", "whole", "fields"])
async def test_corpus_against_the_stdlib(served: Served, first: str) -> None:
    """``first``: what the gateway fetched of each message before the compared request, as
    the convenience properties are parsed once from whichever header data came first: the
    whole header (``header:X-Corpus-Key``), the whole message, or HEADER.FIELDS."""
    stored = served.seed()
    if first == "header":
        ids = await email_ids(served.jmap)
    else:
        ids = await ids_by_received_at(served.jmap)
    assert set(ids) == set(CORPUS)
    if first == "fields":
        await get(served.jmap, ids.values(), ["subject", "from"])
    inbox = (await served.jmap.mailboxes())["Inbox"]["id"]
    emails = await get(
        served.jmap,
        ids.values(),
        [*TRUTH_PROPERTIES, "blobId", "mailboxIds", "keywords", "receivedAt", *BODY_PROPERTIES],
        fetchTextBodyValues=True,
    )
    mismatches: list[str] = []

    def differ(key: str, prop: str, got: object, want: object) -> None:
        if got != want:
            mismatches.append(f"{served.kind} {key} {prop}: gateway {got!r}, stdlib {want!r}")

    for key, raw in stored.items():
        email = emails[ids[key]]
        truth = expected(raw)
        for prop in TRUTH_PROPERTIES:
            if prop not in truth["uncertain"]:
                differ(key, prop, email[prop], truth[prop])
        differ(key, "receivedAt", email["receivedAt"], utc(INTERNALDATES[key]))
        differ(key, "blobId", email["blobId"], f"M{email['id']}")
        differ(key, "mailboxIds", email["mailboxIds"], {inbox: True})
        differ(key, "keywords", email["keywords"], {})
        # The first text/plain part of textBody: an HTML-only message has its HTML there.
        plain = [part for part in email["textBody"] if part["type"] == "text/plain"]
        value = email["bodyValues"][plain[0]["partId"]] if plain else None
        if "textBodyText" not in truth["uncertain"]:
            differ(key, "textBody text", value and value["value"], truth["textBodyText"])
            if value is not None:
                # Text the stdlib decodes cleanly has no encoding problem.
                differ(key, "isEncodingProblem", value["isEncodingProblem"], False)
        if value is not None:
            differ(key, "isTruncated", value["isTruncated"], False)
        names = [
            part["name"] for part in email["attachments"] if part["disposition"] == "attachment"
        ]
        differ(key, "attachment names", names, truth["attachmentNames"])
        # Exactly the textBody parts were asked for (the HTML of an HTML-only message too).
        text_parts = {part["partId"] for part in email["textBody"]}
        differ(key, "bodyValues keys", set(email["bodyValues"]), text_parts)
    assert mismatches == []


async def test_cyrus_rewrites_8bit_header_octets(cyrus_jmap: Jmap, cyrus: Cyrus) -> None:
    """Why the truth is computed on what the server holds: Cyrus 3.6 replaces each 8-bit octet
    of a top-level header field by "X" on APPEND (not those of a part's header)."""
    stored = seed(cyrus, cyrus_jmap.username, {"header_8bit_utf8": CORPUS["header_8bit_utf8"]})
    raw = stored["header_8bit_utf8"]
    assert b"Subject: GrXXXXe aus KXXln\r\n" in raw
    assert b'filename="Caf\xc3\xa9.txt"' in raw
    ids = await email_ids(cyrus_jmap)
    emails = await get(cyrus_jmap, ids.values(), ["subject", "attachments"])
    email = emails[ids["header_8bit_utf8"]]
    assert email["subject"] == "GrXXXXe aus KXXln"
    assert [part["name"] for part in email["attachments"]] == ["Café.txt"]


async def test_preview_without_the_body(served: Served, request: pytest.FixtureRequest) -> None:
    """A list view asks for preview alone; it must still show the start of the text."""
    keys = ["plain_7bit", "alternative", "related_inline", "latin1"]
    served.seed({key: CORPUS[key] for key in keys})
    ids = await email_ids(served.jmap)
    emails = await get(served.jmap, ids.values(), ["preview"])
    previews = {key: emails[ids[key]]["preview"] for key in keys}
    assert previews["plain_7bit"] == "Hello Bob, This is a plain 7bit ASCII message. Alice"
    assert previews["alternative"].startswith("Plain text version.")
    assert previews["related_inline"].startswith("Our logo:")
    assert previews["latin1"] == "Le café était très chaud, à bientôt."


# --- 3: header forms ------------------------------------------------------------------------------


async def test_header_forms(served: Served) -> None:
    keys = ["plain_7bit", "qp_utf8", "latin1", "long_references", "bad_addresses", "forms"]
    stored = served.seed({**{k: CORPUS[k] for k in keys if k in CORPUS}, "forms": FORMS})
    ids = await email_ids(served.jmap)
    properties = [
        "header:Subject:asText",
        "header:From:asAddresses",
        "header:From:asGroupedAddresses",
        "header:To:asGroupedAddresses",
        "header:Reply-To:asGroupedAddresses",
        "header:Message-ID:asMessageIds",
        "header:References:asMessageIds",
        "header:Date:asDate",
        "header:List-Unsubscribe:asURLs",
        "header:Received:all",
        "header:X-Corpus-Key",
        "header:x-corpus-key:asText",
        "header:Subject:all",
        "headers",
    ]
    emails = await get(served.jmap, ids.values(), properties)
    for key, raw in stored.items():
        email, truth, message = emails[ids[key]], expected(raw), parse(raw)
        # bad_addresses: its From has no one right reading (RFC 8621 4.1.2.3: best effort).
        assert truth["uncertain"] <= {"from"}, key
        assert email["header:Subject:asText"] == truth["subject"], key
        assert email["header:Message-ID:asMessageIds"] == truth["messageId"], key
        assert email["header:References:asMessageIds"] == truth["references"], key
        assert email["header:Date:asDate"] == truth["sentAt"], key
        assert email["header:X-Corpus-Key"] == f" {key}", key
        assert email["header:x-corpus-key:asText"] == key, key
        assert email["header:Received:all"] == raw_values(raw, "Received"), key
        assert email["header:Subject:all"] == raw_values(raw, "Subject"), key
        fields = raw_fields(raw)
        assert [h["name"] for h in email["headers"]] == [name for name, _ in fields], key
        assert [h["value"] for h in email["headers"]] == [v.decode() for _, v in fields], key
        for field in ("To", "Reply-To"):
            want = grouped(message, field) if message[field] is not None else None
            assert email[f"header:{field}:asGroupedAddresses"] == want, (key, field)
        if "from" not in truth["uncertain"]:
            assert email["header:From:asAddresses"] == truth["from"], key
            assert email["header:From:asGroupedAddresses"] == grouped(message, "From"), key
        unsubscribe = last_raw(message, "List-Unsubscribe")
        urls = re.findall(r"<([^>]*)>", unsubscribe) if unsubscribe else None
        assert email["header:List-Unsubscribe:asURLs"] == urls, key

    forms = emails[ids["forms"]]
    assert forms["header:Subject:asText"] == "Header forms and a folded line"
    assert forms["header:From:asAddresses"] == [{"name": "Doe, Jane", "email": "jane@example.com"}]
    assert forms["header:To:asGroupedAddresses"] == [
        {
            "name": "Team",
            "addresses": [
                {"name": None, "email": "one@example.org"},
                {"name": "Two", "email": "two@example.org"},
            ],
        },
        {"name": None, "addresses": [{"name": None, "email": "three@example.org"}]},
    ]
    assert forms["header:List-Unsubscribe:asURLs"] == [
        "mailto:leave@lists.example.net?subject=unsubscribe",
        "https://lists.example.net/leave?u=1&l=2",
    ]
    assert forms["header:Received:all"] == [
        " from mx.example.net (mx.example.net [192.0.2.1])\r\n"
        "\tby mail.example.org with ESMTPS id abc123\r\n"
        "\tfor <bob@example.net>; Mon, 04 Mar 2024 10:00:02 +0100",
        " from client.example.com ([198.51.100.7])\r\n"
        " by mx.example.net with ESMTP id def456; Mon, 04 Mar 2024 10:00:01 +0100",
    ]
    assert forms["header:Date:asDate"] == "2024-03-04T10:00:00+01:00"
    bad = emails[ids["bad_addresses"]]
    assert bad["header:To:asGroupedAddresses"] == [
        {"name": "undisclosed-recipients", "addresses": []}
    ]
    assert emails[ids["plain_7bit"]]["header:Received:all"] == []
    assert emails[ids["plain_7bit"]]["header:List-Unsubscribe:asURLs"] is None


async def test_header_all_forms_of_a_repeated_field(served: Served) -> None:
    served.seed({"duplicate_subject": CORPUS["duplicate_subject"]})
    (email_id,) = (await email_ids(served.jmap)).values()
    email = (
        await get(
            served.jmap,
            [email_id],
            ["subject", "header:Subject", "header:Subject:all", "header:Subject:asText:all"],
        )
    )[email_id]
    assert email["subject"] == "Second subject"
    assert email["header:Subject"] == " Second subject"
    assert email["header:Subject:all"] == [" First subject", " Second subject"]
    assert email["header:Subject:asText:all"] == ["First subject", "Second subject"]


@pytest.mark.parametrize(
    "arguments",
    [
        {"properties": ["header:From:asDate"]},
        {"properties": ["header:Subject:asAddresses"]},
        {"properties": ["header:Received:asText"]},
        {"properties": ["header:Subject:all:asText"]},
        {"properties": ["header:Subject:asSomething"]},
        {"properties": ["subject", "colour"]},
        {"properties": ["bodyStructure"], "bodyProperties": ["partId", "colour"]},
        {"properties": ["textBody"], "bodyProperties": ["header:From:asDate"]},
        {"maxBodyValueBytes": -1},
    ],
)
async def test_invalid_arguments(served: Served, arguments: dict[str, Any]) -> None:
    served.seed({"plain_7bit": CORPUS["plain_7bit"]})
    (email_id,) = await every_email_id(served.jmap)
    (response,) = await served.jmap.request(("Email/get", {"ids": [email_id], **arguments}))
    assert response[0] == "error", response
    assert response[1]["type"] == "invalidArguments", response


# --- 4: body parts ----------------------------------------------------------------------------

SHAPES: dict[str, dict[str, Any]] = {
    "alternative": {
        "bodyStructure": (
            None,
            "multipart/alternative",
            [("1", "text/plain"), ("2", "text/html")],
        ),
        "textBody": ["1"],
        "htmlBody": ["2"],
        "attachments": [],
        "hasAttachment": False,
    },
    "mixed_attachments": {
        "bodyStructure": (
            None,
            "multipart/mixed",
            [
                ("1", "text/plain"),
                ("2", "application/pdf"),
                ("3", "text/plain"),
                ("4", "application/octet-stream"),
                ("5", "text/plain"),
            ],
        ),
        "textBody": ["1"],
        "htmlBody": ["1"],
        "attachments": ["2", "3", "4", "5"],
        "hasAttachment": True,
    },
    # RFC 8621 4.1.4: the text/html is both bodies; a related part after the first is an
    # attachment, and an inline one makes no hasAttachment.
    "related_inline": {
        "bodyStructure": (None, "multipart/related", [("1", "text/html"), ("2", "image/png")]),
        "textBody": ["1"],
        "htmlBody": ["1"],
        "attachments": ["2"],
        "hasAttachment": False,
    },
    # The attached message is one part: bodyStructure does not enter it.
    "nested_rfc822": {
        "bodyStructure": (None, "multipart/mixed", [("1", "text/plain"), ("2", "message/rfc822")]),
        "textBody": ["1"],
        "htmlBody": ["1"],
        "attachments": ["2"],
        "hasAttachment": True,
    },
    "nested_multipart": {
        "bodyStructure": (
            None,
            "multipart/mixed",
            [
                (
                    None,
                    "multipart/alternative",
                    [
                        ("1.1", "text/plain"),
                        (
                            None,
                            "multipart/related",
                            [("1.2.1", "text/html"), ("1.2.2", "image/gif")],
                        ),
                    ],
                ),
                ("2", "application/zip"),
            ],
        ),
        "textBody": ["1.1"],
        "htmlBody": ["1.2.1"],
        "attachments": ["1.2.2", "2"],
        "hasAttachment": True,
    },
    "plain_7bit": {
        "bodyStructure": ("1", "text/plain"),
        "textBody": ["1"],
        "htmlBody": ["1"],
        "attachments": [],
        "hasAttachment": False,
    },
}


def _shape_messages() -> dict[str, bytes]:
    return {key: NESTED_MULTIPART if key == "nested_multipart" else CORPUS[key] for key in SHAPES}


async def test_body_parts_and_imap_sections(served: Served) -> None:
    stored = served.seed(_shape_messages())
    ids = await email_ids(served.jmap)
    emails = await get(
        served.jmap,
        ids.values(),
        ["bodyStructure", "textBody", "htmlBody", "attachments", "hasAttachment"],
        bodyProperties=[*DEFAULT_BODY_PROPERTIES, "subParts"],
    )
    with Sections(served.server, served.jmap.username) as sections:
        for key, want in SHAPES.items():
            email_id = ids[key]
            email = emails[email_id]
            assert shape(email["bodyStructure"]) == want["bodyStructure"], key
            for prop in ("textBody", "htmlBody", "attachments"):
                assert [p["partId"] for p in email[prop]] == want[prop], (key, prop)
                for part in email[prop]:
                    assert set(part) == {*DEFAULT_BODY_PROPERTIES, "subParts"}, (key, part)
            assert email["hasAttachment"] is want["hasAttachment"], key
            uid = sections.uid(key)
            for leaf in leaves(email["bodyStructure"]):
                part_id = leaf["partId"]
                assert leaf["blobId"] == f"P{email_id}_{part_id.replace('.', '-')}", key
                body = sections.section(uid, part_id)
                if "." not in part_id and email["bodyStructure"]["subParts"] is None:
                    # A single-part message: its part's header is the message's.
                    mime = stored[key].split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                else:
                    mime = sections.section(uid, f"{part_id}.MIME")
                server_part = parse(mime + body)
                assert leaf["type"] == server_part.get_content_type(), (key, part_id)
                if leaf["type"] == "message/rfc822":
                    assert leaf["size"] == len(body), (key, part_id)
                else:
                    decoded = server_part.get_payload(decode=True)
                    assert isinstance(decoded, bytes)
                    assert leaf["size"] == len(decoded), (key, part_id)
                assert leaf["name"] == server_part.get_filename(), (key, part_id)
                assert leaf["disposition"] == server_part.get_content_disposition(), (key, part_id)


async def test_body_part_details(served: Served) -> None:
    served.seed({key: CORPUS[key] for key in ("mixed_attachments", "related_inline")})
    ids = await email_ids(served.jmap)
    emails = await get(served.jmap, ids.values(), ["attachments", "htmlBody"])
    mixed = emails[ids["mixed_attachments"]]["attachments"]
    assert [(p["name"], p["type"], p["charset"], p["disposition"]) for p in mixed] == [
        ("report.pdf", "application/pdf", None, "attachment"),
        ("Übersicht März.txt", "text/plain", "utf-8", "attachment"),
        ("Prüfbericht.pdf", "application/octet-stream", None, "attachment"),
        ("Отчёт.txt", "text/plain", "utf-8", "attachment"),
    ]
    assert mixed[2]["size"] == 8  # "AAECAwQFBgc=": eight decoded octets
    related = emails[ids["related_inline"]]
    (image,) = related["attachments"]
    assert image["cid"] == "logo.1@corpus.example"
    assert image["disposition"] == "inline" and image["name"] == "logo.png"
    assert image["size"] == 69
    (html,) = related["htmlBody"]
    assert (html["type"], html["charset"], html["cid"]) == ("text/html", "utf-8", None)


async def test_body_properties_honoured(served: Served) -> None:
    stored = served.seed({"mixed_attachments": CORPUS["mixed_attachments"], "forms": FORMS})
    ids = await email_ids(served.jmap)
    wanted = ["partId", "type", "header:Content-Type"]
    emails = await get(
        served.jmap,
        ids.values(),
        ["bodyStructure", "textBody", "attachments"],
        bodyProperties=wanted,
    )
    mixed = emails[ids["mixed_attachments"]]
    # Without "subParts" the root shows none of its children.
    assert mixed["bodyStructure"] == {
        "partId": None,
        "type": "multipart/mixed",
        "header:Content-Type": ' multipart/mixed; boundary="mixed-1"',
    }
    with Sections(served.server, served.jmap.username) as sections:
        uid = sections.uid("mixed_attachments")
        for part in mixed["textBody"] + mixed["attachments"]:
            assert list(part) == wanted
            mime = sections.section(uid, f"{part['partId']}.MIME")
            assert part["header:Content-Type"] == raw_values(mime, "Content-Type")[-1]
    # A single-part message's one part has the message's own header fields.
    forms = emails[ids["forms"]]
    assert forms["bodyStructure"] == {
        "partId": "1",
        "type": "text/plain",
        "header:Content-Type": raw_values(stored["forms"], "Content-Type")[0],
    }
    textual = await get(
        served.jmap,
        [ids["forms"]],
        ["bodyStructure"],
        bodyProperties=["header:Subject:asText", "header:Received:all", "headers"],
    )
    part = textual[ids["forms"]]["bodyStructure"]
    assert part["header:Subject:asText"] == "Header forms and a folded line"
    assert part["header:Received:all"] == raw_values(stored["forms"], "Received")
    assert [h["name"] for h in part["headers"]] == [n for n, _ in raw_fields(stored["forms"])]


async def test_single_part_headers_agree_with_the_email(
    dovecot: Dovecot, jmap: Jmap, request: pytest.FixtureRequest
) -> None:
    """The one part of a single-part message has the message's header fields, so its
    ``headers`` and ``header:`` values are the Email's. (Dovecot only: Cyrus replaces the
    Latin-1 octets on APPEND.)"""
    seed(dovecot, jmap.username, {"header_8bit_latin1": CORPUS["header_8bit_latin1"]})
    (email_id,) = await every_email_id(jmap)
    email = (
        await get(
            jmap,
            [email_id],
            ["subject", "headers", "bodyStructure"],
            bodyProperties=["headers", "header:Subject:asText"],
        )
    )[email_id]
    part = email["bodyStructure"]
    assert part["header:Subject:asText"] == email["subject"]
    assert part["headers"] == email["headers"]


async def test_header_and_body_split_does_not_depend_on_the_cache(
    dovecot: Dovecot, jmap: Jmap, request: pytest.FixtureRequest
) -> None:
    """A header line without a colon before the Subject: the same email must give the same
    subject and bodyValues whatever was asked before, and ``subject`` must equal
    ``header:Subject:asText`` (RFC 8621 4.1.3). (Dovecot only: Cyrus refuses the message.)"""
    seed(
        dovecot,
        jmap.username,
        {
            "no_colon_a": crlf(NO_COLON % b"no_colon_a"),
            "no_colon_b": crlf(NO_COLON % b"no_colon_b"),
        },
    )
    a, b = await every_email_id(jmap)
    text_values: dict[str, Any] = {"fetchTextBodyValues": True}
    # a: the whole message is fetched (no structure cached yet); b: HEADER.FIELDS only.
    first_a = (await get(jmap, [a], ["subject", "bodyValues"], **text_values))[a]
    first_b = (await get(jmap, [b], ["subject"]))[b]
    # Now a's body value comes from BODY[1], b's header from the whole message.
    properties = ["subject", "header:Subject:asText", "bodyValues"]
    again = await get(jmap, [a, b], properties, **text_values)
    problems = []
    for email_id, first in ((a, first_a), (b, first_b)):
        now = again[email_id]
        if now["subject"] != now["header:Subject:asText"]:
            problems.append(f"subject {now['subject']!r}, as text {now['header:Subject:asText']!r}")
        if now["subject"] != first["subject"]:
            problems.append(f"subject was {first['subject']!r}, now {now['subject']!r}")
    if first_a["bodyValues"] != again[a]["bodyValues"]:
        problems.append(f"bodyValues were {first_a['bodyValues']}, now {again[a]['bodyValues']}")
    assert problems == []


# --- 4: maxBodyValueBytes -----------------------------------------------------------------------


def full_texts(stored: dict[str, bytes]) -> dict[str, str]:
    """The decoded text of each single-part message, CRLF as LF, by the stdlib."""
    texts = {}
    for key, raw in stored.items():
        text, reliable = decode_text(parse(raw))
        assert reliable, key
        texts[key] = text.replace("\r\n", "\n")
    return texts


def truncation_problems(
    key: str, value: dict[str, Any], full: str, limit: int, html: bool
) -> list[str]:
    """What is wrong with a body value cut at ``limit`` octets of the text ``full``."""
    text = value["value"]
    octets = len(text.encode())
    problems = []
    if value["isTruncated"] is not True:
        problems.append("isTruncated is not true")
    if value["isEncodingProblem"] is not False:
        problems.append("isEncodingProblem is not false")
    if octets > limit:
        problems.append(f"{octets} octets")
    if not full.startswith(text):  # also catches a U+FFFD for a cut character
        problems.append(f"not a prefix of the text: ...{text[-12:]!r}")
    if html and text.rfind("<") > text.rfind(">"):
        problems.append(f"cut inside a tag: ...{text[-12:]!r}")
    # Text is cut at the last whole character (HTML may also go back to before a tag).
    elif not html and octets <= limit - 4:
        problems.append(f"only {octets} octets")
    return [f"{key} at {limit}: {problem}" for problem in problems]


@pytest.mark.parametrize("limit", [100, 2500])
async def test_max_body_value_bytes_on_a_fresh_fetch(served: Served, limit: int) -> None:
    """Structure not cached yet: the whole message is fetched and the value cut from it."""
    stored = served.seed(LONG)
    texts = full_texts(stored)
    ids = await email_ids(served.jmap)
    emails = await get(
        served.jmap,
        ids.values(),
        ["bodyValues"],
        fetchAllBodyValues=True,
        maxBodyValueBytes=limit,
    )
    problems = []
    for key, email_id in ids.items():
        (value,) = emails[email_id]["bodyValues"].values()
        problems += truncation_problems(key, value, texts[key], limit, key == "long_html")
    assert problems == []


async def test_body_values_in_full_once_the_structure_is_cached(served: Served) -> None:
    stored = served.seed(LONG)
    texts = full_texts(stored)
    ids = await email_ids(served.jmap)
    await get(served.jmap, ids.values(), ["bodyStructure"])
    for limit in (None, 100_000):
        args: dict[str, Any] = {"fetchAllBodyValues": True}
        if limit is not None:
            args["maxBodyValueBytes"] = limit
        emails = await get(served.jmap, ids.values(), ["bodyValues"], **args)
        for key, email_id in ids.items():
            assert emails[email_id]["bodyValues"] == {
                "1": {"value": texts[key], "isEncodingProblem": False, "isTruncated": False}
            }, key


@pytest.fixture(params=["whole", "partial"])
def part_fetch(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Text parts fetched whole (and their text kept), or, as parts over CACHED_PART are,
    only their first octets."""
    if request.param == "partial":
        monkeypatch.setattr(values_module, "CACHED_PART", 0)
    return str(request.param)


async def test_max_body_value_bytes_once_the_structure_is_cached(
    served: Served, part_fetch: str
) -> None:
    """Structure cached: the part alone is fetched (whole, or only its start when it is
    large); the answer must not change."""
    stored = served.seed(LONG)
    texts = full_texts(stored)
    ids = await email_ids(served.jmap)
    await get(served.jmap, ids.values(), ["bodyStructure"])
    problems = []
    for limit in (97, 98, 99, 100, 101, 102, 250, 1000, 2500):
        emails = await get(
            served.jmap,
            ids.values(),
            ["bodyValues"],
            fetchAllBodyValues=True,
            maxBodyValueBytes=limit,
        )
        for key, email_id in ids.items():
            (value,) = emails[email_id]["bodyValues"].values()
            problems += truncation_problems(key, value, texts[key], limit, key == "long_html")
    assert problems == []


async def test_max_body_value_bytes_utf32_fresh(served: Served) -> None:
    stored = served.seed({"long_utf32": UTF32})
    (email_id,) = await every_email_id(served.jmap)
    emails = await get(
        served.jmap, [email_id], ["bodyValues"], fetchAllBodyValues=True, maxBodyValueBytes=4000
    )
    (value,) = emails[email_id]["bodyValues"].values()
    assert truncation_problems("long_utf32", value, UTF32_TEXT, 4000, False) == []
    assert full_texts(stored)["long_utf32"] == UTF32_TEXT


async def test_max_body_value_bytes_utf32_once_the_structure_is_cached(
    served: Served, part_fetch: str
) -> None:
    served.seed({"long_utf32": UTF32})
    (email_id,) = await every_email_id(served.jmap)
    await get(served.jmap, [email_id], ["bodyStructure"])
    emails = await get(
        served.jmap, [email_id], ["bodyValues"], fetchAllBodyValues=True, maxBodyValueBytes=4000
    )
    (value,) = emails[email_id]["bodyValues"].values()
    assert truncation_problems("long_utf32", value, UTF32_TEXT, 4000, False) == []


# --- 5: fetch only what is asked, once ----------------------------------------------------------


@pytest.fixture(params=SERVERS)
async def own_gateway(
    request: pytest.FixtureRequest, redis_url: str
) -> AsyncIterator[tuple[Served, Any]]:
    """A gateway of the test's own (to read its pool's counter) and a fresh account on it."""
    kind: str = request.param
    server = request.getfixturevalue(kind)
    assert isinstance(server, Dovecot | Cyrus)
    settings = gateway_settings(server.url, redis_url)
    app = create_app(settings)
    async with (
        running_gateway(settings, app) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        jmap = await fresh_jmap(server, http)
        yield Served(kind, server, jmap), app


async def test_list_view_fetches_once_per_folder_then_never(
    own_gateway: tuple[Served, Any], caplog: pytest.LogCaptureFixture
) -> None:
    served, app = own_gateway
    pool = app.state.services.pool
    inbox_keys = ["plain_7bit", "qp_utf8", "alternative", "mixed_attachments"]
    other_keys = ["latin1", "conv_plans_1", "lunch"]
    served.seed({key: CORPUS[key] for key in inbox_keys})
    with Witness(served.server, served.jmap.username) as witness:
        witness.create("Other")
    append(served.server, served.jmap.username, {k: CORPUS[k] for k in other_keys}, "Other")
    # Warm-up: the sync indexes both folders; Email/changes names the emails without
    # fetching any header (Email/get of a header would fill the cache).
    ids = await every_email_id(served.jmap)
    assert len(ids) == 7
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    upstream_commands(caplog)

    async def list_view() -> tuple[int, list[str], dict[str, Any]]:
        before = pool.stats().commands
        emails = await get(served.jmap, ids, LIST_VIEW)
        sent = upstream_commands(caplog)
        assert pool.stats().commands - before == len(sent), sent
        return len(sent), sent, emails

    count, sent, first = await list_view()
    # The sync's change check (nothing is selected: Email/changes ended with its own LIST),
    # then per folder one EXAMINE and one UID FETCH of the summary header fields and the
    # preview together.
    verbs = [c.split(" ")[0] for c in sent]
    assert verbs[:5] == ["LIST", "EXAMINE", "UID", "EXAMINE", "UID"], sent
    for fetch in sent[2:5:2]:
        assert "HEADER.FIELDS" in fetch and "PREVIEW" in fetch, fetch
        assert "BODY.PEEK[]" not in fetch and "BODY.PEEK[HEADER]" not in fetch, fetch
    if served.kind == "dovecot":
        assert count == 5
    else:
        # Cyrus 3.6 answers PREVIEW with NIL until its indexer ran (RFC 8970 allows it):
        # the gateway then makes the previews from the start of each email's text part, per
        # folder one BODYSTRUCTURE and one partial fetch per distinct part number. No
        # message is downloaded whole.
        assert set(verbs[5:]) == {"EXAMINE", "UID"}, sent
        assert sum("BODYSTRUCTURE" in c for c in sent) == 2, sent
        assert all("BODY.PEEK[]" not in c for c in sent), sent
        partial = [c for c in sent if "BODY.PEEK[" in c and "]<0." in c]
        assert partial and len(sent) == 5 + 2 * 2 + len(partial), sent
    subjects = sorted(e["subject"] for e in first.values())
    assert subjects == sorted(expected(CORPUS[k])["subject"] for k in inbox_keys + other_keys)
    # The same request again: nothing fetched. The previous request left its last folder
    # EXAMINEd, and the change check UNSELECTs it before the LIST (a server answers STATUS
    # about the selected folder from the session's own view), hence two commands.
    count, sent, again = await list_view()
    assert [c.split(" ")[0] for c in sent] == ["UNSELECT", "LIST"], sent
    assert count == 2
    assert again == first
    # And once more: nothing is selected now, so the LIST alone.
    count, sent, again = await list_view()
    assert [c.split(" ")[0] for c in sent] == ["LIST"], sent
    assert count == 1
    assert again == first


async def test_each_source_is_fetched_once(
    own_gateway: tuple[Served, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Index properties fetch nothing; a header field, the whole header, the structure and
    body values each cost one FETCH the first time and none after (body values come from the
    text kept for a while, whatever maxBodyValueBytes asks)."""
    served, _ = own_gateway
    served.seed({key: CORPUS[key] for key in ("alternative", "mixed_attachments")})
    ids = await every_email_id(served.jmap)
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")

    async def fetched(properties: list[str], **args: Any) -> list[str]:
        upstream_commands(caplog)
        await get(served.jmap, ids, properties, **args)
        return [c for c in upstream_commands(caplog) if c.startswith("UID FETCH")]

    index = ["id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt"]
    assert await fetched(index) == []
    (summary,) = await fetched(["subject", "from", "sentAt"])
    assert "HEADER.FIELDS" in summary
    assert await fetched(["messageId", "to"]) == []
    (header,) = await fetched(["headers"])
    assert "BODY.PEEK[HEADER]" in header
    assert await fetched(["header:List-Id", "subject"]) == []
    (whole,) = await fetched(["bodyStructure", "hasAttachment"])
    assert "BODY.PEEK[]" in whole
    assert await fetched(["textBody", "htmlBody", "attachments", "bodyStructure"]) == []
    # Text parts only: part 1 of each message (the text/plain), fetched by section.
    (values,) = await fetched(["bodyValues"], fetchTextBodyValues=True)
    assert values.endswith("(UID BODY.PEEK[1])"), values
    assert await fetched(["bodyValues"], fetchTextBodyValues=True) == []
    assert await fetched(["bodyValues"], fetchTextBodyValues=True, maxBodyValueBytes=5) == []
    (html,) = await fetched(["bodyValues"], fetchHTMLBodyValues=True)
    assert "BODY.PEEK[2]" in html and "BODY.PEEK[1]" not in html, html


# --- 6: not found -------------------------------------------------------------------------------


async def test_not_found(served: Served) -> None:
    served.seed({key: CORPUS[key] for key in ("plain_7bit", "alternative", "lunch")})
    ids = await email_ids(served.jmap)
    # Bob's message is one Alice does not have: Cyrus derives EMAILID from the message's
    # octets, so the same message in two accounts has the same id in both (and each account
    # finds its own copy under it).
    bob = await fresh_jmap(served.server, served.jmap.http)
    seed(served.server, bob.username, {"conv_plans_1": CORPUS["conv_plans_1"]})
    (bobs,) = (await email_ids(bob)).values()
    assert bobs not in ids.values()
    mine = ids["plain_7bit"]
    asked = [mine, bobs, "Mnosuchemail0000", "xnosuchemail", "dnosuchemail", mine]
    result = await served.jmap.call("Email/get", ids=asked, properties=["subject"])
    assert result["list"] == [{"id": mine, "subject": "Plain 7bit message"}]
    assert result["notFound"] == [bobs, "Mnosuchemail0000", "xnosuchemail", "dnosuchemail"]
    # Bob still sees his own.
    assert (await bob.call("Email/get", ids=[bobs], properties=["id"]))["list"] == [{"id": bobs}]

    # Flagged \Deleted (not yet expunged), then expunged: gone either way.
    imap = served.server.client(served.jmap.username)
    try:
        assert imap.select("INBOX")[0] == "OK"
        uid = uid_of(imap, "alternative")
        assert imap.uid("STORE", uid, "+FLAGS", "(\\Deleted)")[0] == "OK"
        deleted = await served.jmap.call("Email/get", ids=list(ids.values()), properties=["id"])
        assert deleted["notFound"] == [ids["alternative"]]
        uid = uid_of(imap, "lunch")
        assert imap.uid("STORE", uid, "+FLAGS", "(\\Deleted)")[0] == "OK"
        assert imap.expunge()[0] == "OK"
    finally:
        imap.logout()
    gone = await served.jmap.call("Email/get", ids=list(ids.values()), properties=["id"])
    assert sorted(gone["notFound"]) == sorted([ids["alternative"], ids["lunch"]])
    assert [e["id"] for e in gone["list"]] == [mine]
