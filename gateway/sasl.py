"""SASL client responses (RFC 4422) shared by the IMAP and SMTP clients, base64 encoded.

Both protocols carry the same mechanisms with the same initial responses (IMAP AUTHENTICATE
with SASL-IR, RFC 4959; SMTP AUTH, RFC 4954), so they are built once, here.
"""

from __future__ import annotations

import base64
import re

# RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")


def plain_initial_response(user: str, password: str, authzid: str = "") -> str:
    """RFC 4616 PLAIN message: authzid, NUL, user, NUL, password (UTF-8).

    ``authzid`` empty: act as ``user``; otherwise ``user`` (a service account) acts as the
    user named by ``authzid``, when the server allows it to.
    """
    if "\0" in user or "\0" in password or "\0" in authzid:
        raise ValueError("PLAIN credentials cannot contain NUL")
    message = f"{authzid}\0{user}\0{password}".encode()
    return base64.b64encode(message).decode("ascii")


def oauthbearer_initial_response(user: str | None, token: str) -> str:
    """RFC 7628 3.1 client response: GS2 header with the authorization identity (``a=``,
    escaped as RFC 5801 says; left out when ``user`` is None, for servers that take the user
    from the token), then ``auth=Bearer <token>``."""
    authzid = "" if user is None else "a=" + user.replace("=", "=3D").replace(",", "=2C")
    message = f"n,{authzid},\x01auth=Bearer {_bearer(token)}\x01\x01"
    return base64.b64encode(_sasl_text(message, user)).decode("ascii")


def xoauth2_initial_response(user: str, token: str) -> str:
    """The XOAUTH2 client response (Google's and Microsoft's documentation):
    ``user=<user>^Aauth=Bearer <token>^A^A``."""
    message = f"user={user}\x01auth=Bearer {_bearer(token)}\x01\x01"
    return base64.b64encode(_sasl_text(message, user)).decode("ascii")


# RFC 7628 3.2.3: after a failure the server sends a challenge; the client answers with a
# lone %x01 (base64 "AQ==") and then gets the final failure reply.
OAUTHBEARER_ABORT = base64.b64encode(b"\x01").decode("ascii")


def _bearer(token: str) -> str:
    if not _B64TOKEN.fullmatch(token):
        raise ValueError("not an RFC 6750 bearer token")
    return token


def _sasl_text(message: str, user: str | None) -> bytes:
    if user is not None and any(c in user for c in "\0\x01\r\n"):
        raise ValueError("user name cannot carry control characters")
    return message.encode("utf-8")
