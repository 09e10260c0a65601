"""A part decoded here piece by piece is exactly the part decoded whole.

Downloads of encoded parts the upstream cannot decode (broken base64 in real mail) are read in
1 MiB pieces and decoded here; the decoder must cut the pieces only where decoding them apart
gives what the lenient whole-part decoder (gateway.mime.bodyparts.decode_transfer, which also
makes the part sizes and body values) gives. Checked on seeded random damage: octets outside
the alphabet, padding inside the data, lone characters, stray "=", soft line breaks, trailing
white space, carriage returns without line feeds, cut at random places.
"""

from __future__ import annotations

import random

import pytest

from gateway.mime.bodyparts import decode_transfer
from gateway.translators.email.download import PieceDecoder

BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
POOLS = {
    "base64": [BASE64 * 3 + b"==\r\n \t*!\x00\x80", b"QUJD= \r\n", BASE64 + b"=" * 20],
    "quoted-printable": [b"abc =\r\n\t\x80=3D=ZZ=4", b"a  \t\t=\r\r\n", b"=0a1F \r\n"],
    "x-uuencode": [bytes(range(256))],
}


def in_pieces(decoder: PieceDecoder, data: bytes, rng: random.Random, largest: int) -> bytes:
    out = bytearray()
    start = 0
    while True:
        end = start + rng.randint(1, largest)
        out += decoder.feed(data[start:end], final=end >= len(data))
        if end >= len(data):
            return bytes(out)
        start = end


@pytest.mark.parametrize("encoding", sorted(POOLS))
def test_pieces_decode_as_the_whole(encoding: str) -> None:
    rng = random.Random(encoding)
    for pool in POOLS[encoding]:
        for _ in range(400):
            data = bytes(rng.choice(pool) for _ in range(rng.randint(0, 800)))
            largest = rng.choice((3, 40, 400))
            whole = decode_transfer(data, encoding).content
            assert in_pieces(PieceDecoder(encoding), data, rng, largest) == whole, data


def test_a_piece_holds_back_no_more_than_it_must() -> None:
    """Memory stays at about one piece: whole groups and lines go out at once."""
    decoder = PieceDecoder("base64")
    assert decoder.feed(b"QUJD\r\nQUJ", final=False) == b"ABC"
    assert decoder.feed(b"DQQ", final=False) == b"ABC"
    assert decoder.feed(b"==", final=True) == b"A"
    decoder = PieceDecoder("quoted-printable")
    assert decoder.feed(b"caf=C3=A9\r\nna=", final=False) == "café\r\n".encode()
    assert decoder.feed(b"C3=AFve", final=True) == "naïve".encode()
    long_line = PieceDecoder("quoted-printable")
    out = long_line.feed(b"x" * 1000 + b"=4", final=False)
    assert out == b"x" * 1000 and long_line.feed(b"1", final=True) == b"A"
