"""Modified UTF-7 (RFC 3501 5.1.3): RFC examples, round trips and strict rejection."""

from __future__ import annotations

import pytest

from gateway.imap import mutf7

PAIRS = [
    ("INBOX", "INBOX"),
    ("", ""),
    ("&", "&-"),
    ("Tom & Jerry", "Tom &- Jerry"),
    ("&&", "&-&-"),
    # RFC 3501 5.1.3 example: "~peter/mail/台北/日本語"
    ("~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
    ("Входящие/Работа", "&BBIERQQ+BDQETwRJBDgENQ-/&BCAEMAQxBD4EQgQw-"),
    ("下書き", "&Tgtm+DBN-"),
    ("😀", "&2D3eAA-"),
    ("Party 🎉&Cake", "Party &2DzfiQ-&-Cake"),
    ("Ünïcödé", "&ANw-n&AO8-c&APY-d&AOk-"),
    ("tab\there", "tab&AAk-here"),
]


@pytest.mark.parametrize(("text", "encoded"), PAIRS)
def test_encode(text: str, encoded: str) -> None:
    assert mutf7.encode(text) == encoded


@pytest.mark.parametrize(("text", "encoded"), PAIRS)
def test_decode_str_and_bytes(text: str, encoded: str) -> None:
    assert mutf7.decode(encoded) == text
    assert mutf7.decode(encoded.encode("ascii")) == text


@pytest.mark.parametrize(("text", "encoded"), PAIRS)
def test_shifted_runs_match_the_stdlib_utf7_codec(text: str, encoded: str) -> None:
    # Differential check: UTF-7 (RFC 2152) BASE64 runs equal ours with "/" for ",".
    for char in {c for c in text if ord(c) > 0x7F}:
        standard = char.encode("utf-7").decode("ascii")[1:].rstrip("-")
        assert mutf7.encode(char) == "&" + standard.replace("/", ",") + "-"


def test_lone_surrogate_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        mutf7.encode("bad\ud800")


@pytest.mark.parametrize(
    "encoded",
    [
        "&",  # shift never ended
        "&U,BTFw",  # no "-" at the end
        "&U,BTFw-&ZeVnLIqe-",  # null shift: "-&" while in BASE64
        "&AEE-",  # BASE64 for "A", which must represent itself
        "&ACY-",  # BASE64 for "&", which must be "&-"
        "&AGF-",  # non-zero padding bits
        "&AG-",  # 12 bits: not a whole UTF-16 unit
        "&2D0-",  # lone high surrogate
        "&2D3eAA",  # unterminated after an emoji
        "&U/BTFw-",  # "/" is not in modified BASE64
        "caf\u00e9",  # 8-bit character sent raw
        "new\nline",  # control character sent raw
    ],
)
def test_invalid_names_are_rejected(encoded: str) -> None:
    with pytest.raises(ValueError):
        mutf7.decode(encoded)


def test_non_ascii_bytes_are_rejected() -> None:
    with pytest.raises(ValueError):
        mutf7.decode("Отправленные".encode())
