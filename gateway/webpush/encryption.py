"""Web Push message encryption (RFC 8291) with the aes128gcm content coding (RFC 8188).

Built on ``cryptography`` alone: ECDH on P-256, HKDF-SHA-256 and AES-128-GCM are its
primitives, so the scheme is the few lines of RFC 8291 3.4 below (the same library signs the
VAPID tokens). A push message here is always one record, so RFC 8188's record sequencing
reduces to one nonce.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# RFC 8291 4: the record size is at most 4096 (what a push service must accept).
RECORD_SIZE = 4096
# RFC 8188 2.1: salt (16) + rs (4) + idlen (1) + keyid, the sender's 65-octet public key.
HEADER_OCTETS = 16 + 4 + 1 + 65
TAG_OCTETS = 16
# RFC 8188 2: the delimiter octet after the plaintext of the last record (2), no padding.
LAST_RECORD = b"\x02"
# Everything the encryption adds to a plaintext.
OVERHEAD_OCTETS = HEADER_OCTETS + len(LAST_RECORD) + TAG_OCTETS
UA_PUBLIC_OCTETS = 65
AUTH_OCTETS = 16
_B64URL = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")
# Longer than any valid key's base64url text: nothing bigger is decoded.
_MAX_KEY_CHARS = 100


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding (RFC 4648 5); ValueError on anything else."""
    if len(text) > _MAX_KEY_CHARS or not _B64URL.match(text):
        raise ValueError("is not base64url")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except binascii.Error:
        raise ValueError("is not base64url") from None


def b64url_encode(data: bytes) -> str:
    """Base64url without padding, as RFC 8291 and RFC 8292 write keys."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def check_keys(keys: object) -> None:
    """Raise ValueError with a reason unless ``keys`` is a PushSubscription's valid ``keys``:
    ``p256dh`` an uncompressed P-256 point and ``auth`` 16 octets, both base64url."""
    if not isinstance(keys, Mapping):
        raise ValueError("keys must be an object with p256dh and auth")
    extra = set(keys) - {"p256dh", "auth"}
    if extra:
        raise ValueError(f"keys has an unknown property {sorted(map(str, extra))[0]!r}")
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    if not isinstance(p256dh, str) or not isinstance(auth, str):
        raise ValueError("keys needs p256dh and auth, both strings")
    _receiver_key(p256dh)
    _auth_secret(auth)


def _receiver_key(p256dh: str) -> ec.EllipticCurvePublicKey:
    try:
        point = b64url_decode(p256dh)
    except ValueError:
        raise ValueError("keys/p256dh is not base64url") from None
    # RFC 8291 3.1: the user agent's key is an uncompressed point (RFC 8291 leans on X9.62).
    if len(point) != UA_PUBLIC_OCTETS or point[0] != 4:
        raise ValueError("keys/p256dh must be an uncompressed P-256 point (65 octets)")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise ValueError("keys/p256dh is not a point on P-256") from None


def _auth_secret(auth: str) -> bytes:
    try:
        secret = b64url_decode(auth)
    except ValueError:
        raise ValueError("keys/auth is not base64url") from None
    # RFC 8291 3.2: the authentication secret is 16 octets.
    if len(secret) != AUTH_OCTETS:
        raise ValueError("keys/auth must be 16 octets")
    return secret


def encrypt(plaintext: bytes, p256dh_b64url: str, auth_b64url: str) -> bytes:
    """The aes128gcm body (header and one record) of ``plaintext`` for this receiver, with a
    fresh sender key and salt each time (RFC 8291 3.1: a new key pair per message)."""
    return encrypt_with(
        plaintext,
        p256dh_b64url,
        auth_b64url,
        sender=ec.generate_private_key(ec.SECP256R1()),
        salt=os.urandom(16),
    )


def encrypt_with(
    plaintext: bytes,
    p256dh_b64url: str,
    auth_b64url: str,
    *,
    sender: ec.EllipticCurvePrivateKey,
    salt: bytes,
) -> bytes:
    """:func:`encrypt` with the sender key and salt given: RFC 8291 5's example fixes both."""
    if len(plaintext) + len(LAST_RECORD) + TAG_OCTETS > RECORD_SIZE:
        raise ValueError(f"a push message holds at most {RECORD_SIZE - 17} octets")
    receiver = _receiver_key(p256dh_b64url)
    auth = _auth_secret(auth_b64url)
    ua_public = receiver.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    as_public = sender.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    ecdh_secret = sender.exchange(ec.ECDH(), receiver)
    # RFC 8291 3.3: IKM = HKDF(auth, ecdh_secret, "WebPush: info" 0x00 ua_public as_public, 32).
    key_info = b"WebPush: info\x00" + ua_public + as_public
    ikm = _hkdf(auth, ecdh_secret, key_info, 32)
    # RFC 8188 2.2 and 2.3: the content-encryption key and the nonce from the salt.
    cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    record = AESGCM(cek).encrypt(nonce, plaintext + LAST_RECORD, None)
    # RFC 8291 4: the keyid of the header is the sender's public key.
    header = salt + RECORD_SIZE.to_bytes(4, "big") + bytes([len(as_public)]) + as_public
    return header + record


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)
