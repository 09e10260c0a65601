"""Who is calling: HTTP Basic credentials, checked by logging in to the upstream IMAP server.

The gateway keeps no passwords of its own. A successful check may be remembered for a short
time, keyed by an HMAC of username and password under a per-process random salt, so the cache
never holds a password nor anything that helps guess one once the process is gone.

Account ids are a keyed hash of the username under the server secret: stable across replicas
and restarts, and they do not reveal the username.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from gateway.imap.errors import AuthenticationFailed, UpstreamUnavailable
from gateway.imap.pool import Credentials, ImapPool

ACCOUNT_ID_BYTES = 15  # 120 bits, 24 base32 characters
# Longest username and password passed upstream, in UTF-8 octets. RFC 4616 2: a server MUST
# take 255; Dovecot resets a login line of 8 KiB (user and password, base64), so anything
# longer could only fail there, as an upstream error rather than a 401.
MAX_CREDENTIAL_OCTETS = 1024
REFUSAL_MEMORY_SECONDS = 5.0


class Unauthenticated(Exception):
    """No usable credentials, or the upstream refused them."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: their credentials for the upstream and their one account."""

    credentials: Credentials
    account_id: str

    @property
    def username(self) -> str:
        return self.credentials.username


def account_id_for(secret: bytes, username: str) -> str:
    """``a`` + base32 of HMAC-SHA256(secret, username): a valid JMAP Id (RFC 8620 1.2)."""
    digest = hmac.new(secret, b"account-id\0" + username.encode(), hashlib.sha256).digest()
    return "a" + base64.b32encode(digest[:ACCOUNT_ID_BYTES]).decode().lower()


def parse_basic(header: str | None) -> Credentials:
    """Decode an ``Authorization: Basic`` header (RFC 7617, UTF-8)."""
    if not header:
        raise Unauthenticated("no credentials")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        raise Unauthenticated("only Basic authentication is supported")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username or not password:
        raise Unauthenticated("malformed Basic credentials")
    if any(c in decoded for c in "\0\r\n"):
        raise Unauthenticated("malformed Basic credentials")
    if max(len(username.encode()), len(password.encode())) > MAX_CREDENTIAL_OCTETS:
        raise Unauthenticated("the username or password is too long")
    return Credentials(username, password)


class Authenticator:
    """Checks credentials against the upstream, remembering successes for ``cache_seconds``."""

    def __init__(
        self,
        pool: ImapPool,
        secret: bytes,
        cache_seconds: float,
        *,
        max_concurrent_logins: int,
        wait_seconds: float,
    ) -> None:
        self._pool = pool
        self._secret = secret
        self._cache_seconds = cache_seconds
        self._salt = secrets.token_bytes(32)
        self._verified: dict[bytes, float] = {}
        self._refused: dict[bytes, float] = {}
        # Checks of unknown credentials take upstream connections; anyone can send them, so
        # they get a share of the pool, never all of it.
        self._logins = asyncio.Semaphore(max_concurrent_logins)
        self._wait = wait_seconds

    async def authenticate(self, header: str | None) -> Principal:
        """Raise Unauthenticated for bad credentials; upstream trouble raises ImapError."""
        credentials = parse_basic(header)
        key = self._cache_key(credentials)
        now = time.monotonic()
        if self._refused.get(key, 0.0) > now:
            raise Unauthenticated("the upstream refused the credentials")
        if self._verified.get(key, 0.0) <= now:
            self._verified.pop(key, None)
            await self._check(credentials, key, now)
        return Principal(credentials, account_id_for(self._secret, credentials.username))

    async def _check(self, credentials: Credentials, key: bytes, now: float) -> None:
        try:
            async with asyncio.timeout(self._wait):
                await self._logins.acquire()
        except TimeoutError:
            raise UpstreamUnavailable("too many credential checks in progress") from None
        try:
            await self._pool.login(credentials)
        except AuthenticationFailed:
            self._prune(now)
            # The same wrong password again within a few seconds is refused without asking.
            self._refused[key] = now + REFUSAL_MEMORY_SECONDS
            raise Unauthenticated("the upstream refused the credentials") from None
        finally:
            self._logins.release()
        if self._cache_seconds > 0:
            self._prune(now)
            self._verified[key] = now + self._cache_seconds

    def _cache_key(self, credentials: Credentials) -> bytes:
        material = credentials.username.encode() + b"\0" + credentials.password.encode()
        return hmac.new(self._salt, material, hashlib.sha256).digest()

    def _prune(self, now: float) -> None:
        for memory in (self._verified, self._refused):
            for key in [key for key, until in memory.items() if until <= now]:
                del memory[key]
