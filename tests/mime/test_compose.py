"""The message of an Email/set create (RFC 8621 4.6), checked from outside the code.

Every composed message is parsed twice: by the stdlib ``email`` package (``policy.default``),
an independent reader, for decoded headers, structure, filenames and octets; and by this
project's own parsers, which must give back the JMAP properties the client set, since that
is what Email/get will show. Every message is also checked for CRLF line ends and RFC 5322's
998-octet line limit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from gateway.mime.bodyparts import BodyPart, body_structure, part_content, text_html_attachments
from gateway.mime.bodyvalues import body_values
from gateway.mime.compose import (
    CONTENT_PROPERTIES,
    ComposeError,
    compose,
    referenced_blobs,
)
from gateway.mime.headers import (
    RawHeader,
    convenience_properties,
    header_property,
    parse_header_block,
)

NOW = datetime(2024, 2, 29, 23, 59, 58, tzinfo=UTC)
DOMAIN = "gw.example.net"
LIMIT = 1_000_000
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 4 + b"\r\n%%EOF\r\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2
JAPANESE = "日本語のテキストです。\r\n二行目。\r\n".encode()
ATTACHED_MESSAGE = (
    b"From: a@example.com\r\nSubject: inner\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n"
)


def build(email: Mapping[str, Any], blobs: Mapping[str, bytes] | None = None) -> bytes:
    """Compose, and check the wire format every message must have."""
    raw = compose(email, blobs or {}, now=NOW, domain=DOMAIN, max_attachments_size=LIMIT)
    assert_wire_format(raw)
    return raw


def refused(
    email: Mapping[str, Any], blobs: Mapping[str, bytes] | None = None, *, limit: int = LIMIT
) -> ComposeError:
    with pytest.raises(ComposeError) as caught:
        compose(email, blobs or {}, now=NOW, domain=DOMAIN, max_attachments_size=limit)
    return caught.value


def invalid(email: Mapping[str, Any], blobs: Mapping[str, bytes] | None = None) -> list[str]:
    error = refused(email, blobs)
    assert error.type == "invalidProperties", error.description
    assert error.not_found == []
    return error.properties


def assert_wire_format(raw: bytes) -> None:
    """IMAP APPEND wants CRLF; RFC 5322 2.1.1 allows at most 998 octets per line."""
    assert re.search(rb"(?<!\r)\n", raw) is None, "bare LF"
    assert re.search(rb"\r(?!\n)", raw) is None, "bare CR"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def stdlib(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def top_headers(raw: bytes) -> list[RawHeader]:
    return parse_header_block(raw)


def prop(raw: bytes, name: str) -> Any:
    return header_property(top_headers(raw), name)


def shape(part: BodyPart) -> Any:
    """The tree of types, the way tests write expected structures."""
    if part.is_multipart:
        return (part.type, [shape(child) for child in part.sub_parts])
    return part.type


def leaves(message: EmailMessage) -> list[EmailMessage]:
    return [part for part in message.walk() if not part.is_multipart()]


def text_of(part: EmailMessage) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def values_by_type(raw: bytes) -> dict[str, str]:
    root = body_structure(raw)
    values = body_values(
        raw, root, fetch_text=False, fetch_html=False, fetch_all=True, max_bytes=None
    )
    parts = {part.part_id: part for part in root.walk()}
    return {parts[part_id].type: value["value"] for part_id, value in values.items()}


# --- RFC 8621 4.6's own examples ---------------------------------------------------------------

SPEC_DRAFT: dict[str, Any] = {
    "mailboxIds": {"2ea1ca41b38e": True},
    "keywords": {"$seen": True, "$draft": True},
    "from": [{"name": "Joe Bloggs", "email": "joe@example.com"}],
    "subject": "World domination",
    "receivedAt": "2018-07-10T01:03:11Z",
    "sentAt": "2018-07-10T11:03:11+10:00",
    "bodyStructure": {"type": "text/plain", "partId": "bd48", "header:Content-Language": "en"},
    "bodyValues": {
        "bd48": {
            "value": "I have the most brilliant plan. Let me tell you\n"
            "all about it. What we do is, we",
            "isTruncated": False,
        }
    },
}


def test_spec_example_plain_draft() -> None:
    raw = build(SPEC_DRAFT)
    message = stdlib(raw)
    assert message["From"].addresses[0].display_name == "Joe Bloggs"
    assert message["From"].addresses[0].addr_spec == "joe@example.com"
    assert message["Subject"] == "World domination"
    assert message["Date"].datetime == datetime(
        2018, 7, 10, 11, 3, 11, tzinfo=timezone(timedelta(hours=10))
    )
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "text/plain"
    assert message["Content-Language"] == "en"
    assert b"\r\nContent-Language:en\r\n" in raw  # Raw form: the octets after the colon
    assert text_of(message) == SPEC_DRAFT["bodyValues"]["bd48"]["value"]
    own = convenience_properties(top_headers(raw))
    assert own["from"] == SPEC_DRAFT["from"]
    assert own["subject"] == "World domination"
    assert own["sentAt"] == "2018-07-10T11:03:11+10:00"
    root = body_structure(raw)
    assert (root.type, root.language) == ("text/plain", ("en",))
    assert values_by_type(raw) == {"text/plain": SPEC_DRAFT["bodyValues"]["bd48"]["value"]}


def test_spec_example_html_draft() -> None:
    html = (
        '<!DOCTYPE html><html><head><title></title>\n<style type="text/css">div{font-size:16px}'
        "</style></head>\n<body><div>I have the most <b>brilliant</b> plan.</div></body>\n</html>"
    )
    plain = "I have the most brilliant plan. Let me tell you\nall about it. What we do is, we"
    email = {
        "mailboxIds": {"2ea1ca41b38e": True},
        "from": [{"name": "Joe Bloggs", "email": "joe@example.com"}],
        "to": [{"name": "John", "email": "john@example.com"}],
        "subject": "World domination",
        "sentAt": "2018-07-10T11:05:08+10:00",
        "bodyStructure": {
            "type": "multipart/alternative",
            "subParts": [
                {"partId": "a49d", "type": "text/html", "header:Content-Language": "en"},
                {"partId": "bd48", "type": "text/plain", "header:Content-Language": "en"},
            ],
        },
        "bodyValues": {
            "bd48": {"value": plain, "isTruncated": False},
            "a49d": {"value": html, "isTruncated": False},
        },
    }
    raw = build(email)
    root = body_structure(raw)
    assert shape(root) == ("multipart/alternative", ["text/html", "text/plain"])
    assert [part.language for part in root.sub_parts] == [("en",), ("en",)]
    text, html_parts, attachments = text_html_attachments(root)
    assert [part.type for part in text] == ["text/plain"]
    assert [part.type for part in html_parts] == ["text/html"]
    assert attachments == []
    assert values_by_type(raw) == {"text/html": html, "text/plain": plain}
    assert convenience_properties(top_headers(raw))["to"] == email["to"]


# --- Header fields -----------------------------------------------------------------------------

CONVENIENCE: dict[str, Any] = {
    "from": [{"name": "Jürgen Müller", "email": "juergen@example.de"}],
    "sender": [{"name": None, "email": "assistant@example.de"}],
    "replyTo": [{"name": 'O\'Brien, Pat "PJ"', "email": "pat@example.ie"}],
    "to": [
        {"name": "Dörte, M.", "email": "doerte@example.de"},
        {"name": "日本語 名前", "email": "tanaka@example.jp"},
        {"name": None, "email": "bare@example.org"},
    ],
    "cc": [
        {"name": f"Person Nümber {index}", "email": f"p{index}@example.com"} for index in range(12)
    ],
    "bcc": [{"name": "Mr. Smith (Sales)", "email": "smith@example.com"}],
    "subject": "Grüße aus München — résumé, 日本語 " * 3,
    "sentAt": "2024-02-29T13:14:15-05:30",
    "messageId": ["abc.123@mail.example.com"],
    "inReplyTo": ["parent@example.com"],
    "references": [f"ref{index}.{'x' * 30}@example.com" for index in range(40)],
}


def test_convenience_properties_read_back_the_same() -> None:
    raw = build({**CONVENIENCE, "textBody": [{"partId": "1"}], "bodyValues": {"1": {"value": "x"}}})
    assert convenience_properties(top_headers(raw)) == CONVENIENCE


def test_convenience_properties_decode_in_the_stdlib() -> None:
    raw = build(CONVENIENCE)
    message = stdlib(raw)
    assert message["Subject"] == CONVENIENCE["subject"]
    assert [address.display_name for address in message["To"].addresses] == [
        "Dörte, M.",
        "日本語 名前",
        "",
    ]
    assert message["Reply-To"].addresses[0].display_name == 'O\'Brien, Pat "PJ"'
    assert message["From"].addresses[0].addr_spec == "juergen@example.de"
    assert message["Date"].datetime.utcoffset() == -timedelta(hours=5, minutes=30)
    assert message["Message-ID"] == "<abc.123@mail.example.com>"
    assert len(message["References"].split()) == 40


def test_non_ascii_is_encoded_words_not_8bit() -> None:
    raw = build(CONVENIENCE)
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert header_block.isascii()
    assert b"=?utf-8?" in header_block


def test_every_header_form() -> None:
    email = {
        "header:X-Text:asText": "Ünïcødé text",
        "header:X-Addr:asAddresses": [{"name": "Zoë", "email": "zoe@example.com"}],
        "header:X-Group:asGroupedAddresses": [
            {"name": "Friends", "addresses": [{"name": "Ann", "email": "ann@example.com"}]},
            {"name": None, "addresses": [{"name": None, "email": "solo@example.com"}]},
            {"name": "Empty", "addresses": []},
        ],
        "header:X-Ids:asMessageIds": ["one@example.com", "two@[192.0.2.1]"],
        "header:X-When:asDate": "2019-01-01T00:00:00Z",
        "header:List-Post:asURLs": ["mailto:list@example.com", "https://example.com/post"],
        "header:Resent-To:asAddresses:all": [
            [{"name": None, "email": "first@example.com"}],
            [{"name": "Second", "email": "second@example.com"}],
        ],
        "header:Comments:asText:all": ["one", "twö"],
    }
    raw = build(email)
    headers = top_headers(raw)
    expected = {**email, "header:X-When:asDate": "2019-01-01T00:00:00+00:00"}
    assert {name: header_property(headers, name) for name in email} == expected


def test_raw_values_are_kept_exactly() -> None:
    email = {
        "header:X-Raw": " café\r\n\tfolded (comment)  ",
        "header:X-Tight": "no-space",
        "header:From": ' "Raw, Name" <raw@example.com>',
        "header:X-Many:all": [" one", " two"],
    }
    raw = build(email)
    assert b"X-Raw: caf\xc3\xa9\r\n\tfolded (comment)  \r\n" in raw
    assert b"\r\nX-Tight:no-space\r\n" in raw
    assert b'\r\nFrom: "Raw, Name" <raw@example.com>\r\n' in raw
    headers = top_headers(raw)
    assert header_property(headers, "header:X-Raw") == email["header:X-Raw"]
    assert header_property(headers, "header:X-Many:all") == [" one", " two"]
    assert prop(raw, "header:From:asAddresses") == [
        {"name": "Raw, Name", "email": "raw@example.com"}
    ]


def test_text_that_looks_like_an_encoded_word_reads_back_literally() -> None:
    subject = "=?utf-8?q?not_encoded?= really"
    raw = build({"subject": subject})
    assert prop(raw, "header:Subject:asText") == subject
    assert stdlib(raw)["Subject"] == subject


def test_long_unbroken_text_is_folded() -> None:
    subject = "a" * 2000
    raw = build({"subject": subject})
    assert prop(raw, "header:Subject:asText") == subject


def test_draft_addresses_need_not_be_valid() -> None:
    """RFC 8621 4.6: a half-finished draft's To may not conform to RFC 5322."""
    to = [{"name": None, "email": "John Doe"}, {"name": "Half", "email": "half@"}]
    raw = build({"to": to})
    assert prop(raw, "header:To:asAddresses") == to


LONG_NAMES = [
    "Wv4Es日b7yeuCjäVr5mXcöj5RPD9oöU Müller-Lüdenscheidt, Ärztin für Allgemeinmedizin",
    'D日xßp63OHöïm1FZöuG296cä0"日èxéPbX neG) und noch ein paar Wörter',
    "k4ño>pH1Dr8,>h97sï F,v)?auP7ï@,ñL",
    "Chx5<s4tI10FtdI.LQvH",
]


def test_long_non_ascii_names_survive_the_stdlib_folder() -> None:
    """Python 3.11 folds such lists wrongly (a comma encoded, a space lost): not written so."""
    to = [{"name": name, "email": f"p{index}@example.com"} for index, name in enumerate(LONG_NAMES)]
    group_name = "Gruppe für Ärzte und Zahnärzte im schönen Lüdenscheid, " * 2
    groups = [{"name": group_name, "addresses": to}, {"name": None, "addresses": to[:1]}]
    raw = build({"to": to, "header:X-Groups:asGroupedAddresses": groups})
    assert prop(raw, "header:To:asAddresses") == to
    expected_groups = [{"name": group_name.strip(), "addresses": to}, groups[1]]
    assert prop(raw, "header:X-Groups:asGroupedAddresses") == expected_groups
    # The stdlib's address parser keeps the space between adjacent encoded-words, which
    # RFC 2047 6.2 drops ("=?utf-8?q?a?= =?utf-8?q?b?=" reads "a b"), so compare without.
    names = [address.display_name for address in stdlib(raw)["To"].addresses]
    assert [name.replace(" ", "") for name in names] == [
        name.replace(" ", "") for name in LONG_NAMES
    ]


def test_tabs_become_spaces_and_space_runs_one() -> None:
    """A tab in encoded text would be dropped on reading (RFC 8621 4.1.2.2 drops controls)."""
    email = {
        "subject": "Tab\there",
        "from": [{"name": "Zoë\tand  Ann", "email": "z@example.com"}],
    }
    raw = build(email)
    assert prop(raw, "header:Subject:asText") == "Tab here"
    assert prop(raw, "header:From:asAddresses") == [
        {"name": "Zoë and Ann", "email": "z@example.com"}
    ]


def test_names_read_back_trimmed_and_nfc() -> None:
    raw = build({"from": [{"name": "  Re\u0301my  ", "email": "remy@example.fr"}]})
    assert prop(raw, "header:From:asAddresses") == [{"name": "Rémy", "email": "remy@example.fr"}]


def test_null_and_empty_values_write_no_field() -> None:
    raw = build({"subject": None, "to": [], "cc": None, "header:X-Ids:asMessageIds": []})
    names = {header.name.lower() for header in top_headers(raw)}
    assert names.isdisjoint({"subject", "to", "cc", "x-ids"})


def test_date_and_message_id_are_generated() -> None:
    raw = build({"subject": "s"})
    message = stdlib(raw)
    assert message["Date"].datetime == NOW
    assert re.fullmatch(rf"<[A-Za-z0-9_-]{{16,}}@{re.escape(DOMAIN)}>", message["Message-ID"])
    assert build({"subject": "s"}) != raw  # a fresh Message-ID each time
    assert message["MIME-Version"] == "1.0"


def test_given_date_message_id_and_mime_version_are_not_doubled() -> None:
    raw = build(
        {
            "header:Date": " Mon, 1 Jan 2024 00:00:00 +0000",
            "header:Message-ID:asMessageIds": ["mine@example.com"],
            "header:MIME-Version": " 1.0",
        }
    )
    names = [header.name.lower() for header in top_headers(raw)]
    assert names.count("date") == names.count("message-id") == names.count("mime-version") == 1
    assert prop(raw, "header:Message-ID:asMessageIds") == ["mine@example.com"]


def test_unknown_offset_is_minus_zero() -> None:
    raw = build({"sentAt": "2020-05-05T10:00:00-00:00"})
    assert b"\r\nDate: Tue, 05 May 2020 10:00:00 -0000\r\n" in raw
    assert prop(raw, "header:Date:asDate") == "2020-05-05T10:00:00-00:00"


# --- Body --------------------------------------------------------------------------------------

FLAT: dict[str, Any] = {
    "from": [{"name": "A", "email": "a@example.com"}],
    "textBody": [{"partId": "text"}],
    "htmlBody": [{"partId": "html", "type": "text/html"}],
    "attachments": [
        {"blobId": "Gpdf", "type": "application/pdf", "name": "Präsentation résumé.pdf"},
        {"blobId": "Gtxt", "type": "text/plain", "name": "日本語.txt"},
        {"blobId": "Gpng", "type": "image/png", "cid": "logo@example.com", "disposition": "inline"},
    ],
    "bodyValues": {
        "text": {"value": "Grüße,\nsee the logo.\n"},
        "html": {"value": '<p>Grüße, <img src="cid:logo@example.com"></p>\n'},
    },
}
FLAT_BLOBS = {"Gpdf": PDF, "Gtxt": JAPANESE, "Gpng": PNG}


def test_flat_lists_make_mixed_alternative_related() -> None:
    raw = build(FLAT, FLAT_BLOBS)
    assert shape(body_structure(raw)) == (
        "multipart/mixed",
        [
            (
                "multipart/alternative",
                ["text/plain", ("multipart/related", ["text/html", "image/png"])],
            ),
            "application/pdf",
            "text/plain",
        ],
    )


def test_flat_lists_read_back_as_the_same_lists() -> None:
    raw = build(FLAT, FLAT_BLOBS)
    text, html, attachments = text_html_attachments(body_structure(raw))
    assert [(part.type, part.name) for part in text] == [("text/plain", None)]
    assert [(part.type, part.name) for part in html] == [("text/html", None)]
    # The embedded image comes first: it sits inside the body's multipart/related.
    assert [(part.type, part.name, part.cid, part.disposition) for part in attachments] == [
        ("image/png", None, "logo@example.com", "inline"),
        ("application/pdf", "Präsentation résumé.pdf", None, "attachment"),
        ("text/plain", "日本語.txt", None, "attachment"),
    ]
    assert values_by_type(raw)["text/html"] == FLAT["bodyValues"]["html"]["value"]


def test_attachment_octets_and_names_in_the_stdlib() -> None:
    raw = build(FLAT, FLAT_BLOBS)
    parts = {part.get_content_type(): part for part in leaves(stdlib(raw))[2:]}
    pdf, txt = parts["application/pdf"], parts["text/plain"]
    assert pdf.get_filename() == "Präsentation résumé.pdf"
    assert pdf.get_content_disposition() == "attachment"
    assert pdf.get_payload(decode=True) == PDF
    assert txt.get_filename() == "日本語.txt"
    assert txt.get_content_charset() == "utf-8"
    assert txt.get_payload(decode=True) == JAPANESE


def test_attachment_octets_in_our_parser() -> None:
    raw = build(FLAT, FLAT_BLOBS)
    root = body_structure(raw)
    contents = {
        part.name or part.cid: part_content(raw, part) for part in root.walk() if part.part_id
    }
    assert contents["Präsentation résumé.pdf"] == PDF
    assert contents["日本語.txt"] == JAPANESE
    assert contents["logo@example.com"] == PNG


def test_text_bodies_are_identical() -> None:
    raw = build(FLAT, FLAT_BLOBS)
    text, html = leaves(stdlib(raw))[:2]
    assert text_of(text) == FLAT["bodyValues"]["text"]["value"]
    assert text_of(html) == FLAT["bodyValues"]["html"]["value"]
    assert text.get_content_charset() == "utf-8"


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ({"textBody": [{"partId": "t"}]}, "text/plain"),
        ({"htmlBody": [{"partId": "h"}]}, "text/html"),
        (
            {"textBody": [{"partId": "t"}], "htmlBody": [{"partId": "h"}]},
            ("multipart/alternative", ["text/plain", "text/html"]),
        ),
        (
            {"htmlBody": [{"partId": "h"}], "attachments": [{"blobId": "Gpdf"}]},
            ("multipart/mixed", ["text/html", "application/octet-stream"]),
        ),
        (
            {"attachments": [{"blobId": "Gpdf", "type": "application/pdf"}]},
            ("multipart/mixed", ["application/pdf"]),
        ),
        (
            {"htmlBody": [{"partId": "h"}], "attachments": [{"blobId": "Gpng", "cid": "c@x"}]},
            ("multipart/related", ["text/html", "application/octet-stream"]),
        ),
        (
            {"textBody": [{"partId": "t"}], "attachments": [{"blobId": "Gpng", "cid": "c@x"}]},
            ("multipart/mixed", ["text/plain", "application/octet-stream"]),
        ),
        (
            {
                "htmlBody": [{"partId": "h"}],
                "attachments": [{"blobId": "Gpng", "cid": "c@x", "disposition": "attachment"}],
            },
            ("multipart/mixed", ["text/html", "application/octet-stream"]),
        ),
        ({}, "text/plain"),
        ({"textBody": [], "htmlBody": [{"partId": "h"}]}, "text/html"),
    ],
)
def test_flat_structures(email: dict[str, Any], expected: Any) -> None:
    values = {"t": {"value": "plain"}, "h": {"value": "<p>html</p>"}}
    raw = build({**email, "bodyValues": values}, {"Gpdf": PDF, "Gpng": PNG})
    assert shape(body_structure(raw)) == expected


def test_default_dispositions() -> None:
    email = {
        "htmlBody": [{"partId": "h"}],
        "attachments": [{"blobId": "Gpng", "cid": "c@x"}, {"blobId": "Gpdf"}],
        "bodyValues": {"h": {"value": "<img src=cid:c@x>"}},
    }
    raw = build(email, {"Gpdf": PDF, "Gpng": PNG})
    _, _, attachments = text_html_attachments(body_structure(raw))
    assert [part.disposition for part in attachments] == ["inline", "attachment"]


def test_body_structure_with_every_part_property() -> None:
    email = {
        "bodyStructure": {
            "type": "multipart/mixed",
            "header:X-Root": " on the message",
            "subParts": [
                {
                    "type": "multipart/alternative",
                    "subParts": [
                        {"partId": "p", "type": "text/plain", "language": ["en", "de-CH"]},
                        {"blobId": "Ghtml", "type": "text/html", "charset": "iso-8859-1"},
                    ],
                },
                {
                    "blobId": "Gpng",
                    "type": "image/png",
                    "name": "Bild ü.png",
                    "disposition": "inline",
                    "cid": "img@x",
                    "location": "https://example.com/bild.png",
                    "header:X-Part:asText": "pärt",
                    "size": 3,
                },
                {"blobId": "Gmsg", "type": "message/rfc822", "disposition": "attachment"},
            ],
        },
        "bodyValues": {"p": {"value": "plain"}},
    }
    blobs = {"Ghtml": "<p>Café</p>".encode("iso-8859-1"), "Gpng": PNG, "Gmsg": ATTACHED_MESSAGE}
    raw = build(email, blobs)
    root = body_structure(raw)
    assert shape(root) == (
        "multipart/mixed",
        [("multipart/alternative", ["text/plain", "text/html"]), "image/png", "message/rfc822"],
    )
    assert prop(raw, "header:X-Root") == " on the message"
    plain, html = root.sub_parts[0].sub_parts
    image, attached = root.sub_parts[1:]
    assert plain.language == ("en", "de-CH")
    assert (html.charset, part_content(raw, html)) == ("iso-8859-1", blobs["Ghtml"])
    assert (image.name, image.disposition, image.cid) == ("Bild ü.png", "inline", "img@x")
    assert image.location == "https://example.com/bild.png"
    assert (
        header_property([RawHeader(*pair) for pair in image.headers], "header:X-Part:asText")
        == "pärt"
    )
    assert part_content(raw, image) == PNG
    assert (attached.transfer_encoding, part_content(raw, attached)) == ("8bit", ATTACHED_MESSAGE)
    assert attached.message is not None


def test_text_blob_without_charset() -> None:
    email = {
        "attachments": [{"blobId": "u", "type": "text/plain"}, {"blobId": "a", "type": "text/csv"}]
    }
    raw = build(email, {"u": "ü\r\n".encode(), "a": b"a,b\r\n"})
    _, _, (utf8, ascii_) = text_html_attachments(body_structure(raw))
    assert (utf8.charset, ascii_.charset) == ("utf-8", "us-ascii")


# --- Transfer encodings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoding"),
    [
        ("short ASCII\nlines", "7bit"),
        ("x" * 997, "7bit"),
        ("x" * 2000, "quoted-printable"),
        ("Grüße aus München, mostly ASCII text", "quoted-printable"),
        ("日本語のテキストです。" * 20, "base64"),
        ("trailing spaces   \nand\ttabs", "7bit"),
        ("", "7bit"),
    ],
)
def test_text_transfer_encoding(value: str, encoding: str) -> None:
    raw = build({"textBody": [{"partId": "t"}], "bodyValues": {"t": {"value": value}}})
    message = stdlib(raw)
    assert message["Content-Transfer-Encoding"] == encoding
    assert text_of(message) == value
    assert values_by_type(raw) == {"text/plain": value}


@pytest.mark.parametrize(
    ("blob", "media_type", "encoding"),
    [
        (PDF, "application/pdf", "base64"),
        (b"plain ascii, binary type", "application/json", "base64"),
        (b"nul\x00inside text", "text/plain", "base64"),
        (b"From: a@b\r\n\r\nascii", "message/rfc822", "7bit"),
        (ATTACHED_MESSAGE, "message/rfc822", "8bit"),
        (b"From: a@b\r\n\r\n" + b"y" * 1200, "message/rfc822", "base64"),
    ],
)
def test_blob_transfer_encoding(blob: bytes, media_type: str, encoding: str) -> None:
    raw = build({"attachments": [{"blobId": "b", "type": media_type}]}, {"b": blob})
    part = body_structure(raw).sub_parts[0]
    assert (part.type, part.transfer_encoding) == (media_type, encoding)
    assert part_content(raw, part) == blob


def test_text_line_ends_become_crlf() -> None:
    raw = build({"attachments": [{"blobId": "b", "type": "text/plain"}]}, {"b": b"a\nb\rc\r\n"})
    part = body_structure(raw).sub_parts[0]
    assert part_content(raw, part) == b"a\r\nb\r\nc\r\n"


def test_utf16_text_blob_is_kept_exactly() -> None:
    blob = "Grüße\r\n".encode("utf-16")
    email = {"attachments": [{"blobId": "b", "type": "text/plain", "charset": "utf-16"}]}
    raw = build(email, {"b": blob})
    part = body_structure(raw).sub_parts[0]
    assert (part.charset, part.transfer_encoding, part_content(raw, part)) == (
        "utf-16",
        "base64",
        blob,
    )


def test_a_content_disposition_field_replaces_the_default() -> None:
    email = {"attachments": [{"blobId": "b", "header:Content-Disposition": " inline; x=y"}]}
    raw = build(email, {"b": b"x"})
    part = body_structure(raw).sub_parts[0]
    assert part.disposition == "inline"
    assert [name for name, _ in part.headers].count("Content-Disposition") == 1


def test_long_filename_is_folded_rfc2231() -> None:
    name = "日本語" * 40 + ".txt"
    raw = build({"attachments": [{"blobId": "b", "name": name}]}, {"b": b"x"})
    (part,) = leaves(stdlib(raw))
    assert part.get_filename() == name
    assert body_structure(raw).sub_parts[0].name == name


# --- invalidProperties -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["id", "blobId", "threadId", "size", "preview", "hasAttachment"])
def test_server_set_properties(name: str) -> None:
    assert invalid({name: "x", "subject": "s"}) == [name]


def test_unknown_and_headers_properties() -> None:
    email = {"unknown": 1, "headers": [{"name": "X", "value": " y"}], "mailboxIds": {"m": True}}
    assert sorted(invalid(email)) == ["headers", "unknown"]


def test_ignored_properties() -> None:
    raw = build({"mailboxIds": {"m": True}, "keywords": {"$draft": True}, "receivedAt": "bad"})
    assert {header.name for header in top_headers(raw)} == {
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
    }


@pytest.mark.parametrize(
    "email",
    [
        {"from": [{"email": "a@b"}], "header:From:asAddresses": [{"email": "c@d"}]},
        {"subject": "a", "header:subject:asText": "b"},
        {"subject": "a", "header:SUBJECT": " b"},
        {"header:X-A": " 1", "header:x-a:asText": "2"},
        {"sentAt": "2020-01-01T00:00:00Z", "header:Date:asDate": "2020-01-01T00:00:00Z"},
    ],
)
def test_the_same_field_twice(email: dict[str, Any]) -> None:
    assert sorted(invalid(email)) == sorted(email)


def test_body_structure_root_repeats_an_email_field() -> None:
    email = {
        "header:X-A": " top",
        "bodyStructure": {"partId": "p", "header:X-A": " root"},
        "bodyValues": {"p": {"value": "x"}},
    }
    assert sorted(invalid(email)) == ["bodyStructure/header:X-A", "header:X-A"]


@pytest.mark.parametrize(
    "name",
    [
        "header:From:asText",
        "header:Subject:asAddresses",
        "header:Date:asURLs",
        "header:Message-ID:asDate",
        "header:Received:asText",
        "header:X-A:asNothing",
        "header:X-A:all:asText",
        "header:Bad Name",
    ],
)
def test_forms_not_allowed(name: str) -> None:
    assert invalid({name: "x"}) == [name]


@pytest.mark.parametrize(
    "name", ["header:Content-Type", "header:content-language:asText", "header:Content-X"]
)
def test_content_headers_not_on_the_email(name: str) -> None:
    assert invalid({name: "x"}) == [name]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("from", "joe@example.com"),
        ("from", [{"email": "a@b", "extra": 1}]),
        ("to", [{"name": 5, "email": "a@b"}]),
        ("to", [{"name": None}]),
        ("to", [{"email": "jürgen@example.de"}]),
        ("to", [{"email": "a@b>, evil@x"}]),
        ("subject", 5),
        ("subject", "line\nbreak"),
        ("subject", "nul\x00"),
        ("sentAt", "yesterday"),
        ("sentAt", "2024-02-30T00:00:00Z"),
        ("sentAt", "2024-02-01T00:00:00"),
        ("messageId", ["<a@b>"]),
        ("messageId", ["no-at-sign"]),
        ("messageId", "a@b"),
        ("header:X-A:all", " not a list"),
        ("header:X-A", " smuggled\r\nBcc: victim@example.com"),
        ("header:X-A", " trailing\r\n"),
        ("header:X-A", " blank\r\n \r\n continuation"),
        ("header:X-A", " " + "x" * 1000),
        ("header:X-A", 5),
        ("header:X-U:asURLs", ["has space"]),
        ("header:X-G:asGroupedAddresses", [{"addresses": "x"}]),
        ("header:Message-ID:asMessageIds", ["x" * 1000 + "@example.com"]),
    ],
)
def test_bad_values(name: str, value: Any) -> None:
    assert invalid({name: value}) == [name]


def test_a_single_text_part_gives_the_message_its_header_fields() -> None:
    email = {
        "header:X-A": " top",
        "textBody": [{"partId": "t", "header:X-A": " part"}],
        "bodyValues": {"t": {"value": "x"}},
    }
    assert sorted(invalid(email)) == ["header:X-A", "textBody/0/header:X-A"]


def test_body_structure_excludes_the_flat_lists() -> None:
    email = {
        "bodyStructure": {"partId": "p"},
        "textBody": [{"partId": "p"}],
        "attachments": [],
        "bodyValues": {"p": {"value": "x"}},
    }
    assert sorted(invalid(email)) == ["attachments", "bodyStructure", "textBody"]


@pytest.mark.parametrize(
    ("email", "paths"),
    [
        ({"textBody": [{"partId": "p"}, {"partId": "q"}]}, ["textBody"]),
        ({"textBody": {"partId": "p"}}, ["textBody"]),
        ({"textBody": [{"partId": "p", "type": "text/html"}]}, ["textBody/0/type"]),
        ({"htmlBody": [{"partId": "p", "type": "text/plain"}]}, ["htmlBody/0/type"]),
        ({"textBody": [{"partId": "p", "blobId": "b"}]}, ["textBody/0/partId"]),
        ({"textBody": [{"type": "text/plain"}]}, ["textBody/0"]),
        ({"textBody": [{"partId": "missing"}]}, ["textBody/0/partId"]),
        ({"textBody": [{"partId": "p", "charset": "utf-8"}]}, ["textBody/0/charset"]),
        ({"textBody": [{"partId": "p", "size": 1}]}, ["textBody/0/size"]),
        ({"textBody": [{"partId": "p", "headers": []}]}, ["textBody/0/headers"]),
        (
            {"textBody": [{"partId": "p", "header:Content-Transfer-Encoding": " 8bit"}]},
            ["textBody/0/header:Content-Transfer-Encoding"],
        ),
        (
            {"textBody": [{"partId": "p", "header:Content-Type": " text/plain"}]},
            ["textBody/0/header:Content-Type"],
        ),
        (
            {"textBody": [{"partId": "p", "cid": "a@b", "header:Content-ID": " <a@b>"}]},
            ["textBody/0/cid", "textBody/0/header:Content-ID"],
        ),
        ({"textBody": [{"partId": "p", "bogus": 1}]}, ["textBody/0/bogus"]),
        ({"textBody": [{"partId": "p", "subParts": []}]}, ["textBody/0/subParts"]),
        ({"attachments": [{"partId": "p", "type": "image/png"}]}, ["attachments/0/type"]),
        (
            {"attachments": [{"type": "multipart/mixed", "subParts": [{"partId": "p"}]}]},
            ["attachments/0", "attachments/0/subParts", "attachments/0/type"],
        ),
        ({"attachments": "x"}, ["attachments"]),
        ({"attachments": [{"blobId": "b", "type": "no-slash"}]}, ["attachments/0/type"]),
        ({"attachments": [{"blobId": "b", "cid": "<a@b>"}]}, ["attachments/0/cid"]),
        ({"attachments": [{"blobId": "b", "language": ["not a tag"]}]}, ["attachments/0/language"]),
        ({"attachments": [{"blobId": "b", "location": "has space"}]}, ["attachments/0/location"]),
        (
            {"attachments": [{"blobId": "b", "disposition": "in line"}]},
            ["attachments/0/disposition"],
        ),
        ({"attachments": [{"blobId": "b", "name": "a\r\nb"}]}, ["attachments/0/name"]),
        ({"attachments": [{"blobId": 5}]}, ["attachments/0/blobId"]),
        ({"attachments": ["x"]}, ["attachments/0"]),
        ({"bodyStructure": {"type": "multipart/mixed"}}, ["bodyStructure/subParts"]),
        (
            {"bodyStructure": {"type": "multipart/mixed", "subParts": []}},
            ["bodyStructure/subParts"],
        ),
        (
            {
                "bodyStructure": {
                    "type": "multipart/mixed",
                    "partId": "p",
                    "subParts": [{"partId": "q"}],
                }
            },
            ["bodyStructure/partId"],
        ),
        (
            {"bodyStructure": {"partId": "p", "subParts": [{"partId": "q"}], "type": "text/plain"}},
            ["bodyStructure/subParts"],
        ),
        (
            {"bodyStructure": {"subParts": [{"partId": "p"}, {"partId": "p"}]}},
            ["bodyStructure/subParts/1/partId"],
        ),
        ({"bodyStructure": "x"}, ["bodyStructure"]),
        ({"bodyValues": {"p": {"value": "x", "isTruncated": True}}}, ["bodyValues/p"]),
        ({"bodyValues": {"p": {"value": "x", "isEncodingProblem": True}}}, ["bodyValues/p"]),
        ({"bodyValues": {"p": {"value": 5}}}, ["bodyValues/p"]),
        ({"bodyValues": {"p": {"value": "x", "extra": 1}}}, ["bodyValues/p"]),
        ({"bodyValues": {"p": {"value": "lone \ud800"}}}, ["bodyValues/p"]),
        ({"bodyValues": []}, ["bodyValues"]),
    ],
)
def test_bad_body(email: dict[str, Any], paths: list[str]) -> None:
    values = {"p": {"value": "x"}, "q": {"value": "y"}}
    assert sorted(invalid({"bodyValues": values, **email}, {"b": b"x"})) == paths


def test_deep_nesting_is_refused() -> None:
    part: dict[str, Any] = {"partId": "p"}
    for _ in range(80):
        part = {"type": "multipart/mixed", "subParts": [part]}
    error = refused({"bodyStructure": part, "bodyValues": {"p": {"value": "x"}}})
    assert error.type == "invalidProperties"


def test_every_problem_is_reported_at_once() -> None:
    email = {"id": "x", "subject": 5, "attachments": [{"blobId": "missing", "bogus": 1}]}
    error = refused(email)
    assert error.type == "invalidProperties"
    assert sorted(error.properties) == ["attachments/0/bogus", "id", "subject"]
    assert "subject" in error.description


# --- blobNotFound and tooLarge -----------------------------------------------------------------


def test_blob_not_found_lists_every_missing_blob() -> None:
    email = {
        "attachments": [{"blobId": "G1"}, {"blobId": "there"}, {"blobId": "G2"}, {"blobId": "G1"}]
    }
    error = refused(email, {"there": b"x"})
    assert (error.type, error.not_found, error.properties) == ("blobNotFound", ["G1", "G2"], [])


def test_too_large_counts_every_blob_part() -> None:
    email = {"attachments": [{"blobId": "a"}, {"blobId": "a"}]}
    blobs = {"a": b"x" * 600}
    assert refused(email, blobs, limit=1199).type == "tooLarge"
    raw = compose(email, blobs, now=NOW, domain=DOMAIN, max_attachments_size=1200)
    assert len(leaves(stdlib(raw))) == 2


def test_body_values_do_not_count_as_attachments() -> None:
    email = {"textBody": [{"partId": "t"}], "bodyValues": {"t": {"value": "x" * 5000}}}
    assert compose(email, {}, now=NOW, domain=DOMAIN, max_attachments_size=0)


# --- referenced_blobs --------------------------------------------------------------------------


def test_referenced_blobs_in_order_without_duplicates() -> None:
    email = {
        "bodyStructure": {"subParts": [{"blobId": "A"}, {"subParts": [{"blobId": "B"}]}]},
        "textBody": [{"blobId": "C"}],
        "htmlBody": [{"blobId": "A"}],
        "attachments": [{"blobId": "D"}, {"partId": "p"}, {"blobId": "C"}],
    }
    assert referenced_blobs(email) == ["A", "B", "C", "D"]


@pytest.mark.parametrize(
    "email",
    [
        {},
        {"bodyStructure": "x", "textBody": {"blobId": "A"}, "attachments": [5, None, "x"]},
        {"attachments": [{"blobId": 5}, {"blobId": None}, {"subParts": "x"}]},
        {"bodyStructure": {"subParts": [[{"blobId": "A"}]]}},
    ],
)
def test_referenced_blobs_ignores_malformed_input(email: dict[str, Any]) -> None:
    assert referenced_blobs(email) == []


def test_referenced_blobs_stops_at_hostile_depth() -> None:
    part: dict[str, Any] = {"blobId": "deep"}
    for _ in range(10_000):
        part = {"subParts": [part]}
    assert referenced_blobs({"bodyStructure": part}) == []


def test_referenced_blobs_of_a_non_mapping() -> None:
    assert referenced_blobs([]) == []  # type: ignore[arg-type]


def test_content_properties() -> None:
    assert {"from", "subject", "sentAt", "bodyStructure", "bodyValues", "headers"} <= (
        CONTENT_PROPERTIES
    )
    assert CONTENT_PROPERTIES.isdisjoint({"mailboxIds", "keywords", "receivedAt", "id", "size"})
