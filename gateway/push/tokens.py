"""Push tokens: how a browser opens an EventSource or a WebSocket it cannot add a header to.

A browser's ``EventSource`` sends no ``Authorization`` header, and a page's ``WebSocket`` only
the credentials the browser attaches by itself. So the page asks the authenticated API for a
short-lived token (``POST /jmap/push/token``) and puts it in the stream's URL as
``access_token``. The token is a MAC, not a credential: it names the account and lets one push
stream of that account open within ``GATEWAY_PUSH_TOKEN_SECONDS``; it never holds the password
and cannot call the API or log in upstream.

Wire form: ``p1.<base64url payload>.<base64url MAC>``. The payload packs the expiry, the end of
the stream's lifetime, a keyed tag of the upstream identity (the user name stays out of URLs and
proxy logs, as it stays out of account ids) and the account id. The MAC is HMAC-SHA256, cut to
128 bits, over the purpose and the payload, under a key derived from the server secret, so
every replica verifies what any replica minted, and a new secret voids every token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.auth import Principal
from gateway.jmap.errors import problem
from gateway.problems import HttpProblem

if TYPE_CHECKING:
    from gateway.services import Services

__all__ = [
    "QUERY_PARAMETER",
    "TOKEN_PATH",
    "PushToken",
    "mint",
    "minted",
    "token_key",
    "verify",
    "verify_token",
]

TOKEN_PATH = "/jmap/push/token"  # noqa: S105 (a path, not a token)
# The URL query parameter a browser passes the token in (RFC 6750 2.3 names it so).
QUERY_PARAMETER = "access_token"
PURPOSE = b"push"
VERSION = "p1"
MAC_BYTES = 16
IDENTITY_TAG_BYTES = 12
_TIMES = struct.Struct(">II")
# Longer input is refused before any decoding (the account id is 25 characters).
MAX_TOKEN_LENGTH = 200
# A 401 a browser answers without a login dialog (RFC 6750 3.1): never a Basic challenge here.
CHALLENGE = 'Bearer realm="jmap-gateway", error="invalid_token"'


@dataclass(frozen=True)
class PushToken:
    """What a verified token says."""

    account_id: str
    # A keyed tag of the pool Login's upstream identity: binds the token to the identity
    # without naming it (neither the login spelling nor the password ever enter a token).
    identity: str
    expires: float  # unix seconds: a stream must open before this
    stream_until: float  # unix seconds: a stream opened with the token ends by then


def token_key(server_secret: bytes) -> bytes:
    """The token key, apart from every other use of the server secret."""
    return hmac.new(server_secret, b"push-token", hashlib.sha256).digest()


def identity_tag(key: bytes, identity: str) -> str:
    digest = hmac.new(key, b"identity\0" + identity.encode(), hashlib.sha256).digest()
    return _b64(digest[:IDENTITY_TAG_BYTES])


def mint(
    key: bytes, principal: Principal, *, ttl: float, stream_seconds: float, now: float | None = None
) -> tuple[str, PushToken]:
    """A new token for ``principal``'s account, and what it says."""
    issued = time.time() if now is None else now
    token = PushToken(
        account_id=principal.account_id,
        identity=identity_tag(key, principal.login.identity),
        expires=float(int(issued + ttl)),
        stream_until=float(int(issued + max(ttl, stream_seconds))),
    )
    payload = (
        _TIMES.pack(int(token.expires), int(token.stream_until))
        + base64.urlsafe_b64decode(token.identity)
        + token.account_id.encode("ascii")
    )
    return f"{VERSION}.{_b64(payload)}.{_b64(_mac(key, payload))}", token


def minted(token: str, says: PushToken) -> dict[str, str]:
    """The mint route's answer; the times as UTCDate (RFC 8620 1.4)."""
    return {
        "token": token,
        "accountId": says.account_id,
        "expires": _utc_date(says.expires),
        "streamUntil": _utc_date(says.stream_until),
    }


def verify(key: bytes, token: str, now: float) -> PushToken | None:
    """What ``token`` says if this server minted it and it has not expired; None otherwise."""
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        return None
    version, payload_text, mac_text = token.split(".")
    payload = _unb64(payload_text)
    mac = _unb64(mac_text)
    if version != VERSION or payload is None or mac is None:
        return None
    if not hmac.compare_digest(mac, _mac(key, payload)):
        return None
    head = _TIMES.size + IDENTITY_TAG_BYTES
    if len(payload) <= head:
        return None
    expires, stream_until = _TIMES.unpack_from(payload)
    if expires <= now:
        return None
    try:
        account_id = payload[head:].decode("ascii")
    except UnicodeDecodeError:
        return None
    return PushToken(
        account_id=account_id,
        identity=_b64(payload[_TIMES.size : head]),
        expires=float(expires),
        stream_until=float(stream_until),
    )


async def verify_token(svc: Services, token: str, account_id: str | None = None) -> PushToken:
    """The verified token, or the 401 problem; with ``account_id``, also refused when the
    token was minted for another account."""
    key = token_key(await svc.authenticator.server_secret())
    verified = verify(key, token, time.time())
    if verified is None or (account_id is not None and verified.account_id != account_id):
        raise HttpProblem(
            problem(401, "Unauthorized", "The push token is invalid or has expired."),
            {"WWW-Authenticate": CHALLENGE},
        )
    return verified


def _utc_date(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, PURPOSE + b"\0" + payload, hashlib.sha256).digest()[:MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    """The octets of canonical unpadded base64url ``text``; None for anything else (the
    decoder would skip stray characters, so one token would have many spellings)."""
    if not text.isascii():
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return data if _b64(data) == text else None
