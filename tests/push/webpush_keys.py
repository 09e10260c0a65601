"""The device's side of Web Push, written from the RFCs with ``cryptography`` alone (not the
gateway's code): a subscription's key pair and auth secret, decryption of an aes128gcm body
(RFC 8291 3.4, RFC 8188 2), and the check of a VAPID Authorization header (RFC 8292 2-3)."""

from __future__ import annotations

import base64
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    encoding, point = serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    return key.public_bytes(encoding, point)


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, salt, info).derive(ikm)


@dataclass
class DeviceKeys:
    """What a browser or phone generates for one subscription (RFC 8291 2)."""

    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth_secret: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def keys(self) -> dict[str, str]:
        """The PushSubscription's ``keys`` (RFC 8620 7.2)."""
        p256dh = b64url(_point(self.private.public_key()))
        return {"p256dh": p256dh, "auth": b64url(self.auth_secret)}

    def decrypt(self, body: bytes) -> bytes:
        """RFC 8291 3.4 and RFC 8188 2: one aes128gcm record, its padding removed."""
        salt, record_size, id_length = body[:16], *struct.unpack("!IB", body[16:21])
        as_public = body[21 : 21 + id_length]
        ciphertext = body[21 + id_length :]
        assert id_length == 65, id_length  # RFC 8291 4: keyid is the sender's public key
        assert len(ciphertext) <= record_size, (len(ciphertext), record_size)
        sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), as_public)
        ecdh_secret = self.private.exchange(ec.ECDH(), sender)
        ua_public = _point(self.private.public_key())
        key_info = b"WebPush: info\x00" + ua_public + as_public
        ikm = _hkdf(self.auth_secret, ecdh_secret, key_info, 32)
        cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
        nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
        padded = AESGCM(cek).decrypt(nonce, ciphertext, None)
        unpadded = padded.rstrip(b"\x00")
        assert unpadded.endswith(b"\x02"), "the last record's delimiter (RFC 8188 2)"
        return unpadded[:-1]


def verify_vapid(authorization: str, public_key_b64url: str, url: str) -> dict[str, Any]:
    """Check ``Authorization: vapid t=..., k=...`` against the server's public key (RFC 8292):
    the key named is that one, the ES256 signature holds, aud is the push resource's origin and
    exp at most 24 hours ahead. The JWT's claims."""
    scheme, _, params = authorization.partition(" ")
    assert scheme.lower() == "vapid", authorization
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    assert fields["k"] == public_key_b64url, fields
    header_b64, claims_b64, signature_b64 = fields["t"].split(".")
    header = json.loads(unb64url(header_b64))
    assert header["alg"] == "ES256", header
    signature = unb64url(signature_b64)
    assert len(signature) == 64, "RFC 7518 3.4: R and S, 32 octets each"
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(public_key_b64url))
    key.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    claims: dict[str, Any] = json.loads(unb64url(claims_b64))
    parts = urlsplit(url)
    assert claims["aud"] == f"{parts.scheme}://{parts.netloc}", claims
    return claims
