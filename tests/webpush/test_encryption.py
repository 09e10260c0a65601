"""RFC 8291 encryption: the RFC's own example byte for byte, and fresh messages decrypted by
an independent implementation (http-ece, MIT) with the receiver's private key."""

from __future__ import annotations

import base64
import os

import http_ece
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.webpush.encryption import (
    HEADER_OCTETS,
    OVERHEAD_OCTETS,
    b64url_encode,
    check_keys,
    encrypt,
    encrypt_with,
)

# RFC 8291 5 (the example's values, as printed there).
PLAINTEXT = b"When I grow up, I want to be a watermelon"
AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
AS_PUBLIC = (
    "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
)
UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
UA_PUBLIC = (
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
)
AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
SALT = "DGv6ra1nlYgDCS1FRnbzlw"
HEADER = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6"
    "TlzAC8wEqKK6PBru3jl7A8"
)
CIPHERTEXT = "8pfeW0KbunFT06SuDKoJH9Ql87S1QUrdirN6GcG7sFz1y1sqLgVi1VhjVkHsUoEsbI_0LpXMuGvnzQ"


def _b64(text: str) -> bytes:
    """The test's own base64url decoding, independent of the code under test."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(scalar: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(_b64(scalar), "big"), ec.SECP256R1())


def test_rfc8291_example() -> None:
    body = encrypt_with(PLAINTEXT, UA_PUBLIC, AUTH, sender=_key(AS_PRIVATE), salt=_b64(SALT))
    assert body == _b64(HEADER) + _b64(CIPHERTEXT)
    assert len(body) == HEADER_OCTETS + len(PLAINTEXT) + 1 + 16 == 144
    assert b64url_encode(body[21:86]) == AS_PUBLIC


def _decrypt(body: bytes, receiver: ec.EllipticCurvePrivateKey, auth: str) -> bytes:
    """http-ece's decryption: a second implementation of RFC 8188/8291."""
    return bytes(
        http_ece.decrypt(
            body,
            private_key=receiver,
            auth_secret=_b64(auth),
            version="aes128gcm",
        )
    )


def test_rfc8291_example_decrypts_with_the_receivers_key() -> None:
    body = _b64(HEADER) + _b64(CIPHERTEXT)
    assert _decrypt(body, _key(UA_PRIVATE), AUTH) == PLAINTEXT


def _receiver() -> tuple[ec.EllipticCurvePrivateKey, str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return key, b64url_encode(point), b64url_encode(os.urandom(16))


@pytest.mark.parametrize("size", [0, 1, 200, 4096 - OVERHEAD_OCTETS])
def test_fresh_messages_decrypt(size: int) -> None:
    key, p256dh, auth = _receiver()
    plaintext = os.urandom(size)
    body = encrypt(plaintext, p256dh, auth)
    assert len(body) == len(plaintext) + OVERHEAD_OCTETS
    assert _decrypt(body, key, auth) == plaintext
    # RFC 8291 3.1: a new sender key and salt for every message.
    again = encrypt(plaintext, p256dh, auth)
    assert again[:16] != body[:16] and again[21:86] != body[21:86]


def test_wrong_auth_does_not_decrypt() -> None:
    key, p256dh, auth = _receiver()
    body = encrypt(b'{"@type":"StateChange"}', p256dh, auth)
    with pytest.raises(Exception, match=r"(?i)tag|decrypt"):
        _decrypt(body, key, b64url_encode(os.urandom(16)))


def test_one_record_at_most() -> None:
    _, p256dh, auth = _receiver()
    with pytest.raises(ValueError, match="at most 4079"):
        encrypt(b"x" * 4080, p256dh, auth)


def test_check_keys_accepts_valid_keys() -> None:
    _, p256dh, auth = _receiver()
    check_keys({"p256dh": p256dh, "auth": auth})
    check_keys({"p256dh": p256dh + "=", "auth": auth + "=="})  # padding tolerated


def _not_on_curve() -> str:
    point = bytearray(_b64(UA_PUBLIC))
    point[-1] ^= 1
    return b64url_encode(bytes(point))


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        (None, "keys must be an object"),
        ("abc", "keys must be an object"),
        ({"p256dh": UA_PUBLIC}, "needs p256dh and auth"),
        ({"p256dh": UA_PUBLIC, "auth": 5}, "needs p256dh and auth"),
        ({"p256dh": UA_PUBLIC, "auth": AUTH, "x": "y"}, "unknown property 'x'"),
        ({"p256dh": "not base64!", "auth": AUTH}, "p256dh is not base64url"),
        ({"p256dh": UA_PUBLIC + "A" * 100, "auth": AUTH}, "p256dh is not base64url"),
        ({"p256dh": UA_PUBLIC[:60], "auth": AUTH}, "uncompressed P-256 point"),
        ({"p256dh": "A" + UA_PUBLIC[1:], "auth": AUTH}, "uncompressed P-256 point"),
        ({"p256dh": _not_on_curve(), "auth": AUTH}, "not a point on P-256"),
        ({"p256dh": UA_PUBLIC, "auth": "AAAA"}, "auth must be 16 octets"),
        ({"p256dh": UA_PUBLIC, "auth": "+/+/"}, "auth is not base64url"),
    ],
)
def test_check_keys_refuses(keys: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_keys(keys)
