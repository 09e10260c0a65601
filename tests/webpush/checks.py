"""Checks the webpush tests make on their own terms, with cryptography, not the code under test."""

from __future__ import annotations

import base64

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_vapid(header: str) -> tuple[dict[str, object], dict[str, object], str]:
    """Check an ``Authorization: vapid`` value on its own terms: the JWT's ES256 signature
    against the k= public key. Returns (JOSE header, claims, k)."""
    assert header.startswith("vapid t=")
    token, k = header.removeprefix("vapid t=").split(", k=")
    head, claims, signature = token.split(".")
    raw = b64(signature)
    assert len(raw) == 64
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64(k))
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    return orjson.loads(b64(head)), orjson.loads(b64(claims)), k
