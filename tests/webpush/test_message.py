"""A push's body and header fields: the 4096-octet limit at its boundary with the encryption
overhead counted, the encrypted body decrypted independently (http-ece), VAPID verified."""

from __future__ import annotations

import base64
import os

import http_ece
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.webpush.message import MAX_PUSH_OCTETS, TooLarge, build, max_payload
from gateway.webpush.vapid import Vapid
from tests.webpush.checks import verify_vapid

URL = "https://push.example.net/wpush/v2/abc"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.fixture
def receiver() -> tuple[ec.EllipticCurvePrivateKey, dict[str, str], bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    auth = os.urandom(16)
    point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return key, {"p256dh": _b64(point), "auth": _b64(auth)}, auth


def _json(size: int) -> bytes:
    """A JSON document of exactly ``size`` octets."""
    data = orjson.dumps({"@type": "StateChange", "x": "a" * (size - 30)})
    assert len(data) == size
    return data


def test_plain_push() -> None:
    payload = orjson.dumps({"@type": "PushVerification", "verificationCode": "c"})
    body, headers = build(payload, None, ttl=3600, urgency="normal", vapid=None, url=URL)
    assert body == payload
    assert headers == {"TTL": "3600", "Urgency": "normal", "Content-Type": "application/json"}


def test_encrypted_and_signed_push(
    receiver: tuple[ec.EllipticCurvePrivateKey, dict[str, str], bytes],
) -> None:
    key, keys, auth = receiver
    vapid = Vapid(ec.generate_private_key(ec.SECP256R1()), "mailto:ops@example.com")
    payload = orjson.dumps({"@type": "StateChange", "changed": {"a1": {"Email": "s7"}}})
    body, headers = build(
        payload, keys, ttl=60, urgency="high", vapid=vapid, url=URL, topic="a1-state"
    )
    authorization = headers.pop("Authorization")
    assert headers == {
        "TTL": "60",
        "Urgency": "high",
        "Topic": "a1-state",
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
    }
    decrypted = http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm")
    assert decrypted == payload
    _head, claims, k = verify_vapid(authorization)
    assert claims["aud"] == "https://push.example.net"
    assert k == vapid.public_key_b64url


def test_size_limit_at_the_boundary_plain() -> None:
    assert max_payload(None) == MAX_PUSH_OCTETS
    body, _ = build(_json(4096), None, ttl=0, urgency="low", vapid=None, url=URL)
    assert len(body) == 4096
    with pytest.raises(TooLarge):
        build(_json(4097), None, ttl=0, urgency="low", vapid=None, url=URL)


def test_size_limit_at_the_boundary_encrypted(
    receiver: tuple[ec.EllipticCurvePrivateKey, dict[str, str], bytes],
) -> None:
    key, keys, auth = receiver
    # 86-octet header, 1-octet delimiter, 16-octet tag.
    assert max_payload(keys) == 4096 - 103 == 3993
    payload = _json(3993)
    body, _ = build(payload, keys, ttl=0, urgency="low", vapid=None, url=URL)
    assert len(body) == MAX_PUSH_OCTETS
    assert http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm") == (
        payload
    )
    with pytest.raises(TooLarge, match="at most 3993"):
        build(_json(3994), keys, ttl=0, urgency="low", vapid=None, url=URL)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"ttl": -1}, "TTL"),
        ({"urgency": "urgent"}, "Urgency"),
        ({"topic": "a" * 33}, "Topic"),
        ({"topic": "no spaces"}, "Topic"),
        ({"topic": ""}, "Topic"),
    ],
)
def test_bad_arguments(arguments: dict[str, object], message: str) -> None:
    given: dict[str, object] = {"ttl": 60, "urgency": "normal", "vapid": None, "url": URL}
    given.update(arguments)
    with pytest.raises(ValueError, match=message):
        build(b"{}", None, **given)  # type: ignore[arg-type]
