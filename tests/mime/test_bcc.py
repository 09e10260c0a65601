"""The Bcc stripper: every Bcc field gone, every other octet as it was."""

from __future__ import annotations

import email
import email.policy

import pytest

from gateway.mime.bcc import without_bcc

CRLF_MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.com\r\n"
    b"Bcc: carol@example.com,\r\n"
    b"  dave@example.com\r\n"
    b"Subject: hello\r\n"
    b"BCC : erin@example.com\r\n"
    b"\tfrank@example.com\r\n"
    b"X-Note: bcc: not this one\r\n"
    b"\r\n"
    b"Bcc: a line of the body\r\n"
    b"body\r\n"
)


def test_folded_and_repeated_bcc_fields_go_the_rest_stays() -> None:
    assert without_bcc(CRLF_MESSAGE) == (
        b"From: Alice <alice@example.com>\r\n"
        b"To: bob@example.com\r\n"
        b"Subject: hello\r\n"
        b"X-Note: bcc: not this one\r\n"
        b"\r\n"
        b"Bcc: a line of the body\r\n"
        b"body\r\n"
    )


def test_lf_only_line_ends_are_kept() -> None:
    lf = CRLF_MESSAGE.replace(b"\r\n", b"\n")
    assert without_bcc(lf) == (
        b"From: Alice <alice@example.com>\n"
        b"To: bob@example.com\n"
        b"Subject: hello\n"
        b"X-Note: bcc: not this one\n"
        b"\n"
        b"Bcc: a line of the body\n"
        b"body\n"
    )


def test_the_stdlib_parser_finds_no_bcc_and_the_same_other_fields() -> None:
    # The stdlib ends the header section at the obsolete "BCC :" form: leave it out here.
    message = CRLF_MESSAGE.replace(b"BCC :", b"Bcc:")
    before = email.message_from_bytes(message, policy=email.policy.default)
    after = email.message_from_bytes(without_bcc(message), policy=email.policy.default)
    assert after.get_all("Bcc") is None
    assert [(k, str(v)) for k, v in after.items()] == [
        (k, str(v)) for k, v in before.items() if k.lower() != "bcc"
    ]
    assert after.get_payload() == before.get_payload()


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"Subject: no bcc\r\n\r\nbody",
        b"Subject: x\n\n",
        b"Subject: headers only, no body, no line end",
        b"Bccx: a different field\r\n\r\n",
        b"\r\nBcc: the body starts at once\r\n",
        b"From: a@b\r\nSubject: \xff\xfe raw 8-bit\r\n\r\n\x00\xff",
    ],
)
def test_messages_without_a_bcc_field_are_unchanged(message: bytes) -> None:
    assert without_bcc(message) == message


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"Bcc: x@y\r\n\r\nbody", b"\r\nbody"),
        (b"Subject: s\r\nBcc: x@y", b"Subject: s\r\n"),
        (b"Subject: s\r\nBcc: x@y\r\n folded\r\n", b"Subject: s\r\n"),
        (b"bcc:x@y\nbCC: z@y\nTo: t@y\n\nb", b"To: t@y\n\nb"),
        (b"To: t@y\r\nBcc:\r\nCc: c@y\r\n\r\n", b"To: t@y\r\nCc: c@y\r\n\r\n"),
    ],
)
def test_bcc_at_the_edges(message: bytes, expected: bytes) -> None:
    assert without_bcc(message) == expected


def test_a_huge_header_is_read_in_linear_time() -> None:
    # Quadratic work on 200,000 short lines would take minutes; the budget is the test's.
    lines = b"".join(
        b"Bcc: x@y\r\n X-Y: z\r\n" if i % 2 else b"To: t@y\r\n" for i in range(200_000)
    )
    stripped = without_bcc(lines + b"\r\nbody")
    assert stripped == b"To: t@y\r\n" * 100_000 + b"\r\nbody"
