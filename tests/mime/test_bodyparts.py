"""bodyStructure, partIds, EmailBodyPart properties and textBody/htmlBody/attachments.

Messages are built with the stdlib ``email`` package or written out by hand (for broken
mail and for the worked examples of RFC 3501 6.4.5 and RFC 8621 4.1.4). Where a message is
well formed, the stdlib parser is the independent oracle for types, names and decoded bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage, Message

import pytest

from gateway.mime.bodyparts import (
    BODY_PART_PROPERTIES,
    DEFAULT_BODY_PROPERTIES,
    MAX_DEPTH,
    BodyPart,
    body_structure,
    decode_transfer,
    has_attachment,
    part_content,
    text_html_attachments,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3


def crlf(text: str) -> bytes:
    """A message written with LF in the test source, sent with CRLF as on the wire."""
    return text.replace("\n", "\r\n").encode()


def blob_id(part_id: str) -> str:
    return f"B-{part_id}"


def deep_walk(part: BodyPart) -> Iterator[BodyPart]:
    """Every part, entering encapsulated messages as IMAP numbering does."""
    yield part
    for child in part.sub_parts:
        yield from deep_walk(child)
    if part.message is not None:
        yield from deep_walk(part.message)


def ids(parts: list[BodyPart]) -> list[str | None]:
    return [part.part_id for part in parts]


def stdlib_leaves(message: bytes) -> list[Message]:
    """The stdlib's parts with content: not multipart, not a message it parsed into."""
    parsed = message_from_bytes(message, policy=policy.default)
    return [part for part in parsed.walk() if not part.is_multipart()]


def own_leaves(root: BodyPart) -> list[BodyPart]:
    return [part for part in deep_walk(root) if not part.is_multipart and part.message is None]


def assert_matches_stdlib(message: bytes) -> None:
    """Types, names and decoded octets of every leaf agree with the stdlib parser."""
    root = body_structure(message)
    theirs = stdlib_leaves(message)
    ours = own_leaves(root)
    assert [part.type for part in ours] == [part.get_content_type() for part in theirs]
    assert [part.name for part in ours] == [part.get_filename() for part in theirs]
    for own, their in zip(ours, theirs, strict=True):
        content = their.get_payload(decode=True)
        assert isinstance(content, bytes)
        assert part_content(message, own) == content
        assert own.size == len(content)


def alternative_message() -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = "Dinner"
    message.set_content("Dinner on Thursday?\n")
    message.add_alternative("<p>Dinner on <b>Thursday</b>?</p>\n", subtype="html")
    return message


# -- A single part -------------------------------------------------------------------------


def test_single_text_part_is_part_1_with_default_properties() -> None:
    raw = crlf("From: a@example.com\nSubject: Hi\n\nHello\nworld\n")
    root = body_structure(raw)
    assert root.to_jmap(DEFAULT_BODY_PROPERTIES, blob_id=blob_id) == {
        "partId": "1",
        "blobId": "B-1",
        "size": len(b"Hello\r\nworld\r\n"),
        "name": None,
        "type": "text/plain",
        "charset": "us-ascii",
        "disposition": None,
        "cid": None,
        "language": None,
        "location": None,
    }
    assert part_content(raw, root) == b"Hello\r\nworld\r\n"
    assert text_html_attachments(root) == ([root], [root], [])
    assert_matches_stdlib(raw)


def test_only_requested_properties_are_returned() -> None:
    root = body_structure(crlf("Content-Type: text/plain\n\nx\n"))
    assert root.to_jmap(["type", "partId"], blob_id=blob_id) == {
        "type": "text/plain",
        "partId": "1",
    }


def test_headers_property_is_raw_in_order() -> None:
    raw = (
        b"Subject: caf\xc3\xa9\r\n"
        b"X-Folded: one\r\n two\r\n"
        b"X-Bad:\xff\x00ok\r\n"
        b"Content-Type :text/plain\r\n\r\nbody"
    )
    assert body_structure(raw).to_jmap(["headers"], blob_id=blob_id) == {
        "headers": [
            {"name": "Subject", "value": " café"},
            {"name": "X-Folded", "value": " one\r\n two"},
            # Octets that are not UTF-8 read as windows-1252, as in the Email's own headers.
            {"name": "X-Bad", "value": "\u00ffok"},
            {"name": "Content-Type", "value": "text/plain"},
        ]
    }


def test_header_forms_go_to_the_hook_with_raw_headers() -> None:
    seen: list[tuple[list[tuple[str, str]], str]] = []

    def hook(headers: list[tuple[str, str]], prop: str) -> str:
        seen.append((headers, prop))
        return "hooked"

    root = body_structure(crlf("Content-Type: text/plain\nContent-Language: en\n\nx"))
    result = root.to_jmap(["header:Content-Language:asText"], blob_id=blob_id, header_property=hook)
    assert result == {"header:Content-Language:asText": "hooked"}
    expected = [("Content-Type", " text/plain"), ("Content-Language", " en")]
    assert seen == [(expected, "header:Content-Language:asText")]


def test_header_forms_without_hook_and_unknown_properties_are_refused() -> None:
    root = body_structure(crlf("Content-Type: text/plain\n\nx"))
    with pytest.raises(ValueError, match="header_property"):
        root.to_jmap(["header:Subject"], blob_id=blob_id)
    with pytest.raises(ValueError, match="bogus"):
        root.to_jmap(["bogus"], blob_id=blob_id)


def test_property_table_names_every_body_part_property() -> None:
    # RFC 8621 4.1.4, EmailBodyPart.
    assert {*DEFAULT_BODY_PROPERTIES, "headers", "subParts"} == BODY_PART_PROPERTIES


# -- Multiparts ----------------------------------------------------------------------------


def test_alternative_prefers_text_for_text_body_and_html_for_html_body() -> None:
    raw = alternative_message().as_bytes(policy=policy.SMTP)
    root = body_structure(raw)
    text, html, attachments = text_html_attachments(root)
    assert (ids(text), ids(html), attachments) == (["1"], ["2"], [])
    assert not has_attachment(attachments)
    tree = root.to_jmap(["partId", "blobId", "type", "subParts"], blob_id=blob_id)
    assert tree == {
        "partId": None,
        "blobId": None,
        "type": "multipart/alternative",
        "subParts": [
            {"partId": "1", "blobId": "B-1", "type": "text/plain", "subParts": None},
            {"partId": "2", "blobId": "B-2", "type": "text/html", "subParts": None},
        ],
    }
    assert_matches_stdlib(raw)


def test_mixed_with_attachments() -> None:
    message = alternative_message()
    message.add_attachment(PNG, maintype="image", subtype="png", filename="photo.png")
    message.add_attachment(b"%PDF-1.4\n" * 100, maintype="application", subtype="pdf")
    message.add_attachment("a,b\n1,2\n", subtype="csv", filename="table.csv")
    raw = message.as_bytes(policy=policy.SMTP)
    root = body_structure(raw)
    text, html, attachments = text_html_attachments(root)
    assert (ids(text), ids(html), ids(attachments)) == (["1.1"], ["1.2"], ["2", "3", "4"])
    assert [(part.type, part.name, part.disposition) for part in attachments] == [
        ("image/png", "photo.png", "attachment"),
        ("application/pdf", None, "attachment"),
        ("text/csv", "table.csv", "attachment"),
    ]
    assert attachments[0].size == len(PNG)
    assert attachments[2].charset == "utf-8"
    assert has_attachment(attachments)
    assert_matches_stdlib(raw)


def test_related_cid_image_inside_alternative() -> None:
    message = alternative_message()
    html = next(part for part in message.iter_parts() if part.get_content_type() == "text/html")
    assert isinstance(html, EmailMessage)
    html.add_related(PNG, "image", "png", cid="<logo@example.com>")
    raw = message.as_bytes(policy=policy.SMTP)
    root = body_structure(raw)
    text, html_body, attachments = text_html_attachments(root)
    assert (ids(text), ids(html_body), ids(attachments)) == (["1"], ["2.1"], ["2.2"])
    image = attachments[0]
    assert (image.type, image.cid, image.disposition) == ("image/png", "logo@example.com", "inline")
    # RFC 8621 4.1.4: an inline attachment does not make hasAttachment true.
    assert not has_attachment(attachments)
    assert_matches_stdlib(raw)


def test_attached_message_is_one_opaque_attachment() -> None:
    inner = alternative_message()
    inner.add_attachment(PNG, maintype="image", subtype="png", filename="inner.png")
    outer = EmailMessage()
    outer["Subject"] = "Fwd: Dinner"
    outer.set_content("See attached.\n")
    outer.add_attachment(inner)
    raw = outer.as_bytes(policy=policy.SMTP)
    root = body_structure(raw)
    text, html, attachments = text_html_attachments(root)
    assert (ids(text), ids(html), ids(attachments)) == (["1"], ["1"], ["2"])
    attached = attachments[0]
    assert attached.type == "message/rfc822"
    # RFC 8621 4.1.4: bodyStructure does not recurse into message/rfc822.
    assert attached.to_jmap(["partId", "subParts"], blob_id=blob_id) == {
        "partId": "2",
        "subParts": None,
    }
    # Its own parts keep IMAP numbers below it, for fetching them by section.
    assert attached.message is not None
    assert [(part.part_id, part.type) for part in deep_walk(attached.message)] == [
        (None, "multipart/mixed"),
        (None, "multipart/alternative"),
        ("2.1.1", "text/plain"),
        ("2.1.2", "text/html"),
        ("2.2", "image/png"),
    ]
    # The blob is the attached message exactly as it sits in the outer one.
    content = part_content(raw, attached)
    assert attached.size == len(content)
    assert content.startswith(b"Subject: Dinner\r\n")
    assert body_structure(content).to_jmap(["type"], blob_id=blob_id) == {"type": "multipart/mixed"}
    assert_matches_stdlib(raw)


# RFC 3501 6.4.5's example of part numbering, written out as a message.
RFC3501_EXAMPLE = crlf(
    """Subject: numbering
Content-Type: multipart/mixed; boundary="o"

--o
Content-Type: text/plain

part 1
--o
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

cGFydCAy
--o
Content-Type: message/rfc822

Subject: 3
Content-Type: multipart/mixed; boundary="i3"

--i3
Content-Type: text/plain

part 3.1
--i3
Content-Type: application/octet-stream

part 3.2
--i3--

--o
Content-Type: multipart/mixed; boundary="m4"

--m4
Content-Type: image/gif

part 4.1
--m4
Content-Type: message/rfc822

Subject: 4.2
Content-Type: multipart/mixed; boundary="i42"

--i42
Content-Type: text/plain

part 4.2.1
--i42
Content-Type: multipart/alternative; boundary="a"

--a
Content-Type: text/plain

part 4.2.2.1
--a
Content-Type: text/richtext

part 4.2.2.2
--a--
--i42--

--m4--
--o--
"""
)


def test_part_ids_follow_imap_section_numbers() -> None:
    root = body_structure(RFC3501_EXAMPLE)
    assert [(part.part_id, part.type) for part in deep_walk(root)] == [
        (None, "multipart/mixed"),
        ("1", "text/plain"),
        ("2", "application/octet-stream"),
        ("3", "message/rfc822"),
        (None, "multipart/mixed"),
        ("3.1", "text/plain"),
        ("3.2", "application/octet-stream"),
        (None, "multipart/mixed"),
        ("4.1", "image/gif"),
        ("4.2", "message/rfc822"),
        (None, "multipart/mixed"),
        ("4.2.1", "text/plain"),
        (None, "multipart/alternative"),
        ("4.2.2.1", "text/plain"),
        ("4.2.2.2", "text/richtext"),
    ]
    leaves = [part for part in deep_walk(root) if part.part_id and part.message is None]
    assert [part_content(RFC3501_EXAMPLE, part) for part in leaves] == [
        f"part {part.part_id}".encode() for part in leaves
    ]
    assert_matches_stdlib(RFC3501_EXAMPLE)


def test_encapsulated_single_part_is_numbered_below_its_message() -> None:
    raw = crlf(
        """Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: message/rfc822

Subject: inner

inner body
--b--
"""
    )
    attached = body_structure(raw).sub_parts[0]
    assert attached.message is not None
    assert (attached.message.part_id, attached.message.type) == ("1.1", "text/plain")
    assert part_content(raw, attached.message) == b"inner body"


# RFC 8621 4.1.4's worked example; each leaf's body is its letter.
RFC8621_EXAMPLE = crlf(
    """Content-Type: multipart/mixed; boundary="top"

--top
Content-Type: text/plain
Content-Disposition: inline

A
--top
Content-Type: multipart/mixed; boundary="m2"

--m2
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: multipart/mixed; boundary="m3"

--m3
Content-Type: text/plain
Content-Disposition: inline

B
--m3
Content-Type: image/jpeg
Content-Disposition: inline

C
--m3
Content-Type: text/plain
Content-Disposition: inline

D
--m3--
--alt
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html

E
--rel
Content-Type: image/jpeg

F
--rel--
--alt--
--m2
Content-Type: image/jpeg
Content-Disposition: attachment

G
--m2
Content-Type: application/x-excel

H
--m2
Content-Type: message/rfc822

Subject: J

J
--m2--
--top
Content-Type: text/plain
Content-Disposition: inline

K
--top--
"""
)


def test_rfc8621_example_decomposition() -> None:
    root = body_structure(RFC8621_EXAMPLE)

    def letters(parts: list[BodyPart]) -> list[str]:
        return [part_content(RFC8621_EXAMPLE, part).decode()[-1] for part in parts]

    text, html, attachments = text_html_attachments(root)
    assert letters(text) == ["A", "B", "C", "D", "K"]
    assert letters(html) == ["A", "E", "K"]
    assert letters(attachments) == ["C", "F", "G", "H", "J"]
    assert has_attachment(attachments)


def test_text_after_a_named_part_and_related_parts_are_attachments() -> None:
    raw = crlf(
        """Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain

body
--b
Content-Type: text/plain; name="notes.txt"

notes
--b
Content-Type: multipart/related; boundary="r"

--r
Content-Type: text/html

<p>related</p>
--r
Content-Type: text/plain

not first in related
--r--
--b--
"""
    )
    text, html, attachments = text_html_attachments(body_structure(raw))
    assert (ids(text), ids(html), ids(attachments)) == (["1", "3.1"], ["1", "3.1"], ["2", "3.2"])


def test_inline_image_between_texts_is_body_not_attachment() -> None:
    raw = crlf(
        """Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain

before
--b
Content-Type: image/jpeg
Content-Disposition: inline

jpeg
--b
Content-Type: text/plain

after
--b--
"""
    )
    text, html, attachments = text_html_attachments(body_structure(raw))
    assert (ids(text), ids(html), attachments) == (["1", "2", "3"], ["1", "2", "3"], [])


def test_html_only_alternative_fills_text_body_with_html() -> None:
    raw = crlf(
        """Content-Type: multipart/alternative; boundary="b"

--b
Content-Type: text/html

<p>only html</p>
--b--
"""
    )
    text, html, attachments = text_html_attachments(body_structure(raw))
    assert (ids(text), ids(html), attachments) == (["1"], ["1"], [])


def test_digest_parts_default_to_message_rfc822() -> None:
    raw = crlf(
        """Content-Type: multipart/digest; boundary="d"

--d

Subject: first

one
--d
Content-Type: text/plain

not a message
--d--
"""
    )
    root = body_structure(raw)
    first, second = root.sub_parts
    # RFC 2046 5.1.5; an implicit message/rfc822 has no charset.
    assert (first.part_id, first.type, first.charset) == ("1", "message/rfc822", None)
    assert (second.part_id, second.type, second.charset) == ("2", "text/plain", "us-ascii")
    assert first.message is not None
    assert (first.message.part_id, part_content(raw, first.message)) == ("1.1", b"one")
    stdlib = message_from_bytes(raw, policy=policy.default)
    assert isinstance(stdlib, EmailMessage)
    assert [part.get_content_type() for part in stdlib.iter_parts()] == [
        "message/rfc822",
        "text/plain",
    ]


# -- Properties of one part ----------------------------------------------------------------


def single(headers: str) -> BodyPart:
    return body_structure(crlf(f"{headers}\n\nbody\n"))


def test_rfc2231_continued_non_ascii_filename() -> None:
    part = single(
        "Content-Type: application/pdf; name=fallback.pdf\n"
        "Content-Disposition: attachment;\n"
        " filename*0*=utf-8''%C3%A9t%C3%A9%20;\n"
        " filename*1*=long%20name.pdf"
    )
    assert (part.name, part.disposition) == ("été long name.pdf", "attachment")


def test_name_falls_back_to_encoded_word_content_type_name() -> None:
    part = single('Content-Type: application/pdf; name="=?UTF-8?B?w6l0w6kucGRm?="')
    assert part.name == "été.pdf"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ("Subject: no content type", ("text/plain", "us-ascii")),
        ("Content-Type: text/html", ("text/html", "us-ascii")),
        ('Content-Type: Text/HTML; Charset="ISO-8859-1"', ("text/html", "ISO-8859-1")),
        ("Content-Type: application/json; charset=utf-8", ("application/json", "utf-8")),
        ("Content-Type: image/png", ("image/png", None)),
        ("Content-Type: nonsense", ("text/plain", "us-ascii")),
    ],
)
def test_type_and_charset(headers: str, expected: tuple[str, str | None]) -> None:
    # RFC 8621 4.1.4 charset: the parameter if present, else us-ascii for text/*.
    part = single(headers)
    assert (part.type, part.charset) == expected


def test_disposition_cid_language_and_location() -> None:
    part = single(
        "Content-Type: image/png\n"
        "Content-Disposition: INLINE; filename=a.png\n"
        "Content-ID: (logo) <part1.abc@example.com>\n"
        "Content-Language: en-GB, (comment) fr\n"
        "Content-Location: https://example.com/a/very/long/\n path/logo.png"
    )
    assert part.to_jmap(
        ["disposition", "cid", "language", "location", "name"], blob_id=blob_id
    ) == {
        "disposition": "inline",
        "cid": "part1.abc@example.com",
        "language": ["en-GB", "fr"],
        "location": "https://example.com/a/very/long/path/logo.png",
        "name": "a.png",
    }


# -- Sizes and spans -----------------------------------------------------------------------


def test_size_is_decoded_for_leaves_and_raw_for_multiparts() -> None:
    raw = crlf(
        """Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

AAECAwQF
BgcICQ==
--b
Content-Type: text/plain
Content-Transfer-Encoding: quoted-printable

caf=C3=A9
--b--
"""
    )
    root = body_structure(raw)
    binary, text = root.sub_parts
    assert (binary.size, text.size) == (10, 5)
    assert part_content(raw, binary) == bytes(range(10))
    assert root.size == len(raw) - raw.index(b"--b")
    assert raw[root.header_start : root.body_start].endswith(b"\r\n\r\n")


def test_transfer_encoded_message_part_is_left_opaque() -> None:
    raw = crlf(
        """Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: message/rfc822
Content-Transfer-Encoding: base64

U3ViamVjdDogaGkNCg0KYm9keQ==
--b--
"""
    )
    attached = body_structure(raw).sub_parts[0]
    assert attached.message is None
    assert part_content(raw, attached) == b"Subject: hi\r\n\r\nbody"
    assert attached.size == 19


# -- Broken mail -----------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_preamble_epilogue_transport_padding_and_line_endings(eol: bytes) -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        b"preamble\n--b  \nContent-Type: text/plain\n\none\n--b\n\ntwo\n\n--b-- \nepilogue\n"
        b"--b\n\nnot a part\n"
    ).replace(b"\n", eol)
    root = body_structure(raw)
    assert [part_content(raw, part) for part in root.sub_parts] == [b"one", b"two" + eol]
    assert_matches_stdlib(raw)


def test_missing_close_delimiter_runs_to_the_end() -> None:
    raw = crlf('Content-Type: multipart/mixed; boundary="b"\n\n--b\n\none\n--b\n\ntwo\n')
    root = body_structure(raw)
    assert [part_content(raw, part) for part in root.sub_parts] == [b"one", b"two\r\n"]


def test_inner_multipart_without_close_delimiter_ends_at_the_outer_one() -> None:
    raw = crlf(
        """Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="inner"

--inner

a
--outer

b
--outer--
"""
    )
    root = body_structure(raw)
    assert [(part.part_id, part_content(raw, part)) for part in own_leaves(root)] == [
        ("1.1", b"a"),
        ("2", b"b"),
    ]


def test_multipart_without_boundary_has_no_parts() -> None:
    root = body_structure(crlf("Content-Type: multipart/mixed\n\n--b\n\ntext\n--b--\n"))
    assert (root.part_id, root.sub_parts) == (None, ())
    assert text_html_attachments(root) == ([], [], [])


def test_part_without_blank_line_is_all_header_as_imap_numbers_it() -> None:
    """Dovecot 2.3 answers BODY[1] of this message with nothing and BODY[1.MIME] with the
    line: the body of a part starts after an empty line, or is empty."""
    raw = crlf('Content-Type: multipart/mixed; boundary="b"\n\n--b\nno header here\n--b--\n')
    (part,) = body_structure(raw).sub_parts
    assert (part.type, part.headers, part_content(raw, part)) == ("text/plain", (), b"")


def test_a_line_that_is_no_field_is_dropped_and_the_header_goes_on() -> None:
    raw = crlf("Content-Type: text/plain\nBad line\n continued\nX-A: 1\n\nbody\n")
    root = body_structure(raw)
    assert root.headers == (("Content-Type", " text/plain"), ("X-A", " 1"))
    assert part_content(raw, root) == b"body\r\n"


def test_deep_nesting_stops_at_max_depth() -> None:
    depth = 3 * MAX_DEPTH
    opening = "".join(
        f'Content-Type: multipart/mixed; boundary="b{n}"\n\n--b{n}\n' for n in range(depth)
    )
    raw = crlf(opening + "\ndeepest\n")
    root = body_structure(raw)
    levels = 0
    while root.sub_parts:
        (root,) = root.sub_parts
        levels += 1
    assert (levels, root.type, root.part_id) == (MAX_DEPTH, "multipart/mixed", None)


# -- Content-Transfer-Encoding ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "body", "content", "problem"),
    [
        ("base64", b"aGVs\r\nbG8=\r\n", b"hello", False),
        ("base64", b"aGVsbG8=!!", b"hello", True),
        ("base64", b"aGVsbG8", b"hello", True),
        ("base64", b"aGk=aGk=", b"hihi", True),
        ("base64", b"aGVs*bG8=a", b"hello", True),
        ("quoted-printable", b"caf=C3=A9 =\r\nsoft  \r\nend", b"caf\xc3\xa9 soft\r\nend", False),
        ("quoted-printable", b"a=ZZb=", b"a=ZZb", True),
        ("8bit", b"\xe9\r\n", b"\xe9\r\n", False),
        ("x-uuencode", b"begin 644 x", b"begin 644 x", True),
    ],
)
def test_decode_transfer(encoding: str, body: bytes, content: bytes, problem: bool) -> None:
    decoded = decode_transfer(body, encoding)
    assert (decoded.content, decoded.problem) == (content, problem)


def test_transfer_encoding_header_is_case_insensitive() -> None:
    part = single("Content-Transfer-Encoding: BASE64 (comment)")
    assert part.transfer_encoding == "base64"
