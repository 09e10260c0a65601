"""Content codings without a network: Accept-Encoding negotiation (RFC 9110 12.5.3), which
media types are encoded, and that every coding's output decodes with an independent decoder
(the standard library's gzip, Google's brotli, zstandard's decompressor), piece by piece."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable

import brotli
import pytest
import zstandard

from gateway.compression import CODINGS, Coding, compressible, negotiate

# A JMAP-like body: what the gateway sends most.
BODY = json.dumps(
    {
        "methodResponses": [
            [
                "Email/get",
                {
                    "list": [
                        {
                            "id": f"M{n:024x}",
                            "from": [{"name": f"Sender {n % 7}", "email": f"s{n % 7}@example.com"}],
                            "subject": f"Meeting notes {n % 13}",
                            "receivedAt": f"2026-11-{n % 28 + 1:02d}T10:00:00Z",
                            "keywords": {"$seen": True} if n % 3 else {},
                            "preview": "Hello, here are the notes from today " * 4,
                        }
                        for n in range(50)
                    ]
                },
                "g",
            ]
        ]
    }
).encode()


def decoder(name: str) -> Callable[[], Callable[[bytes], bytes]]:
    """A fresh incremental decoder of ``name``: call it with each piece as it arrives."""
    if name == "gzip":
        return lambda: zlib.decompressobj(31).decompress
    if name == "br":
        return lambda: brotli.Decompressor().process
    return lambda: zstandard.ZstdDecompressor().decompressobj().decompress


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        # RFC 9110 12.5.3's own examples.
        ("compress, gzip", "gzip"),
        ("", None),
        ("*", "br"),
        ("compress;q=0.5, gzip;q=1.0", "gzip"),
        ("gzip;q=1.0, identity; q=0.5, *;q=0", "gzip"),
        # No field: identity, whatever the RFC allows.
        (None, None),
        # Weights decide; equal weights: the server's preference (br, zstd, gzip).
        ("gzip, deflate, br, zstd", "br"),
        ("gzip;q=0.5, br;q=0.8", "br"),
        ("gzip, zstd", "zstd"),
        ("zstd;q=0.9, gzip", "gzip"),
        ("br;q=0.999, zstd;q=1.0", "zstd"),
        ("br;q=0, *", "zstd"),
        ("br;q=0, zstd;q=0, *;q=0.1", "gzip"),
        ("*;q=0", None),
        ("identity", None),
        ("identity;q=0", None),  # nothing acceptable that the gateway has: identity anyway
        ("deflate, compress", None),
        # Tokens are case-insensitive; x-gzip is gzip (RFC 9110 8.4.1.3).
        ("BR", "br"),
        ("x-gzip", "gzip"),
        (" gzip ;  q=0.3 , zstd ; Q=0.2", "gzip"),
        # Invalid weights make the entry count as not sent.
        ("br;q=2, gzip", "gzip"),
        ("br;q=0.1234, gzip;q=0.001", "gzip"),
        ("br;q=, gzip;q=0.5", "gzip"),
        ("br;level=11, gzip;q=0.5", "gzip"),
        (",,, ;q=1, gzip", "gzip"),
    ],
)
def test_negotiation(accept: str | None, chosen: str | None) -> None:
    coding = negotiate(accept)
    assert (coding.name if coding else None) == chosen


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip, br", "br"),
        ("br;q=1, zstd;q=0.9", "br"),
        ("*", "zstd"),
        (None, None),
    ],
)
def test_streamed_bodies_prefer_zstd_among_equals(accept: str | None, chosen: str | None) -> None:
    coding = negotiate(accept, streamed=True)
    assert (coding.name if coding else None) == chosen


def test_a_huge_accept_encoding_is_bounded_and_not_cached() -> None:
    # Entries past the 32nd are not looked at: a stranger's 64 KiB header costs little.
    huge = ", ".join(["nothing"] * 5000 + ["br"])
    assert negotiate(huge) is None
    assert negotiate(", ".join(["nothing"] * 20 + ["zstd"])).name == "zstd"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("media", "expected"),
    [
        ("application/json", True),
        ("application/problem+json", True),
        ("text/plain; charset=utf-8", True),
        ("TEXT/HTML", True),
        ("text/calendar", True),
        ("message/rfc822", True),
        ("image/svg+xml", True),
        ("application/xhtml+xml", True),
        ("image/png", False),
        ("image/jpeg", False),
        ("audio/mpeg", False),
        ("video/mp4", False),
        ("application/zip", False),
        ("application/gzip", False),
        ("application/pdf", False),
        ("application/octet-stream", False),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", False),
        ("", False),
    ],
)
def test_compressible_types(media: str, expected: bool) -> None:
    assert compressible(media) is expected


@pytest.mark.parametrize("coding", CODINGS, ids=lambda c: c.name)
def test_one_shot_decodes_to_the_same_octets(coding: Coding) -> None:
    encoded = coding.encode(BODY)
    assert len(encoded) < len(BODY) / 4
    assert decoder(coding.name)()(encoded) == BODY
    if coding.name == "gzip":
        assert gzip.decompress(encoded) == BODY


@pytest.mark.parametrize("coding", CODINGS, ids=lambda c: c.name)
def test_each_streamed_piece_decodes_as_it_arrives(coding: Coding) -> None:
    """Flushed pieces: a client decodes all of the first piece before the second exists."""
    pieces = [BODY[i : i + 3000] for i in range(0, len(BODY), 3000)]
    encoder = coding.stream()
    decode = decoder(coding.name)()
    got = b""
    for piece in pieces[:-1]:
        got += decode(encoder.piece(piece))
        assert got == BODY[: len(got)] and len(got) == BODY.index(piece) + len(piece)
    got += decode(encoder.end(pieces[-1]))
    assert got == BODY


def test_zstd_windows_stay_within_what_http_decoders_accept() -> None:
    # RFC 9659 3: at most 8 MB; a 20 MB body shows the window the level would pick.
    zstd = next(c for c in CODINGS if c.name == "zstd")
    encoded = zstd.encode(bytes(range(256)) * 80_000)
    assert zstandard.get_frame_parameters(encoded).window_size <= 8 * 1024 * 1024
