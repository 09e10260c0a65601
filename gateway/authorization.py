"""The ``Authorization`` header: Basic (RFC 7617) and Bearer (RFC 6750), parsed strictly.

Sizes are bounded before anything reaches the upstream: Dovecot's login process resets a
connection whose AUTHENTICATE line passes about 8 KB, and no real user name or password comes
near the bounds below. A bearer token is passed through unread, except that with
GATEWAY_OAUTH_USERNAME_CLAIM its JWT payload (RFC 7519) is read, unverified, for the user name
to name to the upstream, which checks the token against it (Dovecot's oauth2 passdb does).
"""

from __future__ import annotations

import base64
import binascii
import re

import orjson

from gateway.credentials import Credentials, Mechanism, Origin

MAX_USERNAME_OCTETS = 256
MAX_PASSWORD_OCTETS = 4096
MAX_TOKEN_OCTETS = 4096
# RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
# RFC 7519 7.2: a JWS compact serialisation, three base64url parts.
_JWT = re.compile(r"[A-Za-z0-9_-]+\.([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Unauthenticated(Exception):
    """No usable credentials, or the upstream refused them.

    ``bearer`` tells a refused bearer token apart, whose challenge carries RFC 6750's
    ``error="invalid_token"``.
    """

    def __init__(self, message: str, *, bearer: bool = False) -> None:
        super().__init__(message)
        self.bearer = bearer


def parse_authorization(
    header: str | None, origin: Origin | None, username_claim: str | None = None
) -> Credentials:
    """The credentials of an ``Authorization`` header, or :class:`Unauthenticated`."""
    if not header:
        raise Unauthenticated("no credentials")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        return parse_basic(value, origin)
    if scheme.lower() == "bearer":
        return parse_bearer(value, origin, username_claim)
    raise Unauthenticated("only Basic and Bearer authentication are supported")


def parse_basic(value: str, origin: Origin | None) -> Credentials:
    """RFC 7617 2: base64 of ``user-id ":" password``, UTF-8 (the charset we announce)."""
    token = value.strip()
    if len(token) > (MAX_USERNAME_OCTETS + MAX_PASSWORD_OCTETS + 1) * 4 // 3 + 4:
        raise Unauthenticated("Basic credentials too long")
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username or not password or _CONTROL.search(decoded):
        raise Unauthenticated("malformed Basic credentials")
    if len(username.encode()) > MAX_USERNAME_OCTETS or len(password.encode()) > MAX_PASSWORD_OCTETS:
        raise Unauthenticated("Basic credentials too long")
    return Credentials(username, password, Mechanism.PASSWORD, origin)


def parse_bearer(value: str, origin: Origin | None, username_claim: str | None) -> Credentials:
    token = value.strip()
    if len(token) > MAX_TOKEN_OCTETS:
        raise Unauthenticated("bearer token too long", bearer=True)
    if not _B64TOKEN.fullmatch(token):
        raise Unauthenticated("malformed bearer token", bearer=True)
    username = token_username(token, username_claim) if username_claim else ""
    return Credentials(username, token, Mechanism.BEARER, origin)


def token_username(token: str, claim: str) -> str:
    """The ``claim`` of a JWT's payload when it is a usable user name, else ""."""
    match = _JWT.fullmatch(token)
    if not match:
        return ""
    payload = match.group(1)
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return ""
    name = claims.get(claim) if isinstance(claims, dict) else None
    if not isinstance(name, str) or not name or _CONTROL.search(name):
        return ""
    return name if len(name.encode()) <= MAX_USERNAME_OCTETS else ""
