"""The first sync's reading of thread links: Links.from_block gives exactly what
Links.from_headers(parse_header_block(...)) gives, whatever the block (its quick split takes
only plain ASCII blocks and hands every other to parse_header_block), and the faster id
encodings give the ids they always gave (contract D1: ids never change)."""

from __future__ import annotations

import base64
import hashlib
import random
import re

import pytest

from gateway.mime.headers import parse_header_block
from gateway.mime.limits import MESSAGE_ID_CHARS, THREAD_SUBJECT_CHARS
from gateway.sync.emails import _short_id
from gateway.sync.threads import (
    _PREFIX,
    Links,
    _first_message_id,
    message_ids,
    normalize_subject,
    thread_id_for,
)

FIELDS = [
    b"Message-ID: <a1@example.com>",
    b"Message-Id:<a2@example.com>",
    b"MESSAGE-ID : <a3@example.com>",
    b"In-Reply-To: <p1@example.com>",
    b"In-Reply-To: <p1@example.com> <p2@example.com>",
    b"References: <r1@example.com> <r2@example.com>\r\n\t<r3@example.com>",
    b"References: <r1@example.com>\r\n <p1@example.com>\r\n  <a1@example.com>",
    b"References:",
    b"Subject: Re: Re: [list] Hello  world (fwd)",
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Wien",
    b"Subject: =?iso-8859-1?b?Q2Fm6Q==?=",
    b"Subject: Caf\xc3\xa9 au lait",
    b"Subject: Caf\xe9 latin-1",
    b"Subject: folded\r\n subject line",
    b"Subject:",
    b"Subject:   leading spaces",
    b"Subject: AW: Antwort",
    b"Subject: with\x00nul",
    b"X-Bad Line without colon",
    b" continuation first",
    b"Subject: bare\nLF",
    b"Subject: bare\rCR",
    b"Message-ID: <" + b"x" * 300 + b"@example.com>",
    b"Message-ID: <" + b"x" * 986 + b"@example.com>",
    b"Message-ID: <" + b"x" * 987 + b"@example.com> <second@example.com>",
    b"References: <a@b> <" + b"r" * 999 + b"> <c@d>",
    b"Subject: tab\there  and  double",
    b"Subject: =?utf-8?q?ideographic=E3=80=80space?= (fwd)",
]


def block(rng: random.Random) -> bytes:
    lines = rng.sample(FIELDS, rng.randrange(0, 6))
    body = b"".join(line + b"\r\n" for line in lines)
    return body + rng.choice([b"\r\n", b"\r\n", b"", b"\r\nafter blank: x\r\n", b"\n"])


def reference(data: bytes) -> Links:
    return Links.from_headers(parse_header_block(data))


@pytest.mark.parametrize("field", FIELDS)
def test_each_form_alone(field: bytes) -> None:
    data = field + b"\r\n\r\n"
    assert Links.from_block(data) == reference(data)


def test_generated_blocks_read_as_parse_header_block_reads_them() -> None:
    rng = random.Random(16)
    for _ in range(5000):
        data = block(rng)
        assert Links.from_block(data) == reference(data), data


def test_a_block_larger_than_a_field_bound_takes_the_general_path() -> None:
    data = b"Subject: " + b"s" * (200 * 1024) + b"\r\nMessage-ID: <big@example.com>\r\n\r\n"
    assert Links.from_block(data) == reference(data)


def _old_short_id(prefix: str, material: bytes) -> str:
    digest = hashlib.sha256(material).digest()
    return prefix + base64.b32encode(digest[:15]).decode().lower()[:20]


def test_ids_are_the_ones_always_given() -> None:
    for n in range(2000):
        material = b"%032x" % (n * 7919)
        assert _short_id("x", material) == _old_short_id("x", material)
        email_id = _old_short_id("x", material)
        assert thread_id_for(email_id) == _old_short_id("t", b"thread\0" + email_id.encode())


# The readings before the first sync's quick paths, as they were written: the oracle.
_OLD_MESSAGE_ID = re.compile(r"<\s*([^<>\s]+?)\s*>")
_OLD_SPACE = re.compile(r"\s+")
_OLD_TRAILERS = ("(fwd)", "(fw)")


def _old_message_ids(value: str | None) -> list[str]:
    if not value:
        return []
    return [i for i in _OLD_MESSAGE_ID.findall(value) if len(i) <= MESSAGE_ID_CHARS]


def _old_normalize_subject(subject: str | None) -> str:
    value = subject or ""
    start = 0
    while (match := _PREFIX.match(value, start)) is not None and match.end() > start:
        start = match.end()
    end = len(value)
    while True:
        while end > start and value[end - 1].isspace():
            end -= 1
        trailer = next(
            (t for t in _OLD_TRAILERS if value[max(start, end - len(t)) : end].lower() == t),
            None,
        )
        if trailer is None:
            break
        end -= len(trailer)
    return _OLD_SPACE.sub(" ", value[start:end]).strip().casefold()[:THREAD_SUBJECT_CHARS]


ID_PIECES = ["<", ">", " ", "\t", "\r\n ", "a", "b@c", "x" * 997, "y" * 998, "z" * 999, "<<", ">>"]
SUBJECT_PIECES = [
    "Re:",
    "re :",
    "Fwd:",
    "[list]",
    " ",
    "  ",
    "\t",
    "\u3000",
    "\u00a0",
    "\x1c",
    "\u2028",
    "Hello",
    "Gr\u00fc\u00dfe",
    "(fwd)",
    "(FW)",
    " (fwd) ",
    ")",
    "(",
    "x" * 300,
    "\u0130",
]


def test_message_ids_as_before_on_generated_fields() -> None:
    rng = random.Random(161)
    for _ in range(5000):
        value = "".join(rng.choice(ID_PIECES) for _ in range(rng.randrange(0, 9)))
        assert message_ids(value) == _old_message_ids(value), value
        assert _first_message_id(value) == next(iter(_old_message_ids(value)), None), value


def test_subjects_normalize_as_before_on_generated_subjects() -> None:
    rng = random.Random(162)
    for _ in range(5000):
        value = "".join(rng.choice(SUBJECT_PIECES) for _ in range(rng.randrange(0, 9)))
        assert normalize_subject(value) == _old_normalize_subject(value), value
