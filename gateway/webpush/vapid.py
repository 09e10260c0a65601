"""VAPID (RFC 8292): the gateway identifies itself to push services with a signed token.

The operator's key pair is one P-256 key; its public half is the ``applicationServerKey`` of
the Session's ``urn:ietf:params:jmap:webpush-vapid`` capability (RFC 9749), so a client can
tie its push subscription to this gateway. Every push carries ``Authorization: vapid t=<JWT>,
k=<public key>`` (RFC 8292 3). A token is signed once per push service origin and reused
until near its expiry: signing per push would cost an ECDSA signature each time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.webpush.destinations import parse_url
from gateway.webpush.encryption import b64url_decode, b64url_encode

if TYPE_CHECKING:
    from gateway.config import Settings

# RFC 8292 2: exp MUST NOT be more than 24 hours after the request; 12 hours leaves room for
# clock skew between the gateway and the push service.
TOKEN_SECONDS = 12 * 3600
# A cached token is replaced when less than this is left of it.
RENEW_BEFORE_SECONDS = 3600
# Origins remembered at once (push services are few: FCM, Mozilla, Apple and relays).
MAX_CACHED_ORIGINS = 256
SCALAR_OCTETS = 32
_HEADER = b64url_encode(orjson.dumps({"typ": "JWT", "alg": "ES256"}))


def load_private_key(text: str) -> ec.EllipticCurvePrivateKey:
    """The VAPID key from a PEM (PKCS#8 or SEC 1) or a base64url 32-octet private scalar
    (what ``python -m gateway vapid-keys`` and most Web Push tools print); ValueError else."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeError):
            raise ValueError("is not a readable unencrypted PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("must be a P-256 (prime256v1) key")
        return key
    try:
        scalar = b64url_decode(text)
    except ValueError:
        raise ValueError("must be a PEM key or a base64url P-256 private key") from None
    if len(scalar) != SCALAR_OCTETS:
        raise ValueError("must be a PEM key or a base64url 32-octet P-256 private key")
    try:
        return ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())
    except ValueError:
        raise ValueError("is not a valid P-256 private key") from None


def check_subject(subject: str) -> None:
    """RFC 8292 2.1: the contact is a mailto: or https: URI; ValueError else."""
    if not subject.startswith(("mailto:", "https://")) or len(subject) > 500:
        raise ValueError("must be a mailto: or https: URI")
    if not subject.isprintable() or any(c.isspace() for c in subject):
        raise ValueError("must not contain spaces or control characters")


def new_private_key() -> str:
    """A fresh private key in the base64url form :func:`load_private_key` reads."""
    key = ec.generate_private_key(ec.SECP256R1())
    return b64url_encode(key.private_numbers().private_value.to_bytes(SCALAR_OCTETS, "big"))


def public_key_b64url(key: ec.EllipticCurvePrivateKey) -> str:
    """The uncompressed public point, base64url (RFC 8292 3.2, RFC 9749's applicationServerKey)."""
    return b64url_encode(
        key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )


def origin(url: str) -> str:
    """RFC 6454's ASCII serialisation of the URL's origin: scheme://host[:port], the port
    only when not the scheme's default (RFC 8292 2: the ``aud`` claim).

    The host is the one the HTTP client connects to (destinations.parse_url: httpx's IDNA
    2008), not Python's IDNA 2003 codec, which maps "faß.de" to "fass.de" while the
    connection goes to "xn--fa-hia.de": the push service would refuse the token.
    RefusedDestination for a URL parse_url refuses (never one checked at create)."""
    destination = parse_url(url)
    host = f"[{destination.host}]" if ":" in destination.host else destination.host
    default = {"https": 443, "http": 80}.get(destination.scheme)
    if destination.port == default:
        return f"{destination.scheme}://{host}"
    return f"{destination.scheme}://{host}:{destination.port}"


class Vapid:
    """The operator's VAPID key and contact, and the tokens signed with them per origin."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        subject: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self.subject = subject
        self.public_key_b64url = public_key_b64url(key)
        self._clock = clock
        self._tokens: OrderedDict[str, tuple[str, int]] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> Vapid | None:
        """None when the operator configured no VAPID key (config.py checks both or neither)."""
        secret, subject = settings.webpush_vapid_private_key, settings.webpush_vapid_subject
        if secret is None or subject is None:
            return None
        return cls(load_private_key(secret.get_secret_value()), subject)

    def authorization(self, url: str) -> str:
        """The ``Authorization`` header value for a push to ``url`` (RFC 8292 3)."""
        audience = origin(url)
        now = self._clock()
        cached = self._tokens.get(audience)
        if cached is None or cached[1] - now < RENEW_BEFORE_SECONDS:
            expires = int(now) + TOKEN_SECONDS
            cached = (self._token(audience, expires), expires)
            self._tokens[audience] = cached
            while len(self._tokens) > MAX_CACHED_ORIGINS:
                self._tokens.popitem(last=False)
        self._tokens.move_to_end(audience)
        return f"vapid t={cached[0]}, k={self.public_key_b64url}"

    def _token(self, audience: str, expires: int) -> str:
        claims = b64url_encode(orjson.dumps({"aud": audience, "exp": expires, "sub": self.subject}))
        signing_input = f"{_HEADER}.{claims}".encode("ascii")
        der = self._key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        # RFC 7518 3.4: ES256 signatures are r || s, 32 octets each, not DER.
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{_HEADER}.{claims}.{b64url_encode(signature)}"

    def __repr__(self) -> str:
        return f"Vapid(public_key={self.public_key_b64url!r}, subject={self.subject!r})"
