"""The first sync's reading of thread links: Links.from_block gives exactly what
Links.from_headers(parse_header_block(...)) gives, whatever the block (its quick split takes
only plain ASCII blocks and hands every other to parse_header_block), and the faster id
encodings give the ids they always gave (contract D1: ids never change)."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest

from gateway.mime.headers import parse_header_block
from gateway.sync.emails import _short_id
from gateway.sync.threads import Links, thread_id_for

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
