"""Who is calling: credentials from the ``Authorization`` header, checked by the upstream.

The gateway keeps no passwords or tokens of its own. A successful check may be remembered for
a short time, keyed by an HMAC of the credentials under a per-process random salt, so the cache
never holds a password or token nor anything that helps guess one once the process is gone.

The account is the upstream's user, not the spelling of the login: after the check the
upstream names the user (:mod:`gateway.imap.identity`), and the account id is a keyed hash of
that name under the server secret: the same for ``ALICE`` and ``alice``, for a password and a
token, on every replica, and it does not reveal the user name.

Checks of unknown credentials are bounded (:mod:`gateway.login_gate`) and failures counted per
client address and per user name across replicas (:mod:`gateway.cache.throttle`): past the
counts the answer is 429 with Retry-After, whether or not the user exists.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import ipaddress
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from gateway.authorization import Unauthenticated, parse_authorization
from gateway.cache.store import SecretSource
from gateway.cache.throttle import LoginKeys, LoginThrottle
from gateway.credentials import Credentials, Mechanism, Origin
from gateway.imap.errors import AuthenticationFailed, ImapError, UpstreamUnavailable
from gateway.imap.pool import ImapPool, Login
from gateway.login_gate import PER_USERNAME, NoShare, SharedCall, Shares
from gateway.origin import ProxyPolicy
from gateway.usernames import UsernameFormat

log = logging.getLogger(__name__)

__all__ = ["Authenticator", "Principal", "Throttled", "Unauthenticated", "account_id_for"]

ACCOUNT_ID_BYTES = 15  # 120 bits, 24 base32 characters
REFUSAL_MEMORY_SECONDS = 5.0
BEARER_MECHANISMS = frozenset({"AUTH=OAUTHBEARER", "AUTH=XOAUTH2"})
# Until a connection has told which SASL mechanisms the upstream offers, one greeting asks.
GREETING_PROBE_TIMEOUT = 2.0
GREETING_PROBE_INTERVAL = 10.0
# Failed logins from IPv6 count per /64: one host easily holds a whole /64.
IPV6_PREFIX = 64


class Throttled(Exception):
    """Too many failed logins (or checks in progress) for this address or user name."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: their upstream login and their one account."""

    login: Login
    account_id: str

    @property
    def username(self) -> str:
        """The user's name ("" for a token that names nobody): the one acted for when a
        master user logs in for them (a background watcher), never the master's."""
        return self.login.credentials.user


def account_id_for(secret: bytes, identity: str) -> str:
    """``a`` + base32 of HMAC-SHA256(secret, identity): a valid JMAP Id (RFC 8620 1.2)."""
    digest = hmac.new(secret, b"account-id\0" + identity.encode(), hashlib.sha256).digest()
    return "a" + base64.b32encode(digest[:ACCOUNT_ID_BYTES]).decode().lower()


@dataclass(frozen=True)
class _Verified:
    identity: str
    until: float


class Authenticator:
    """Checks credentials against the upstream, remembering successes for ``cache_seconds``."""

    def __init__(
        self,
        pool: ImapPool,
        secret: SecretSource,
        throttle: LoginThrottle,
        *,
        cache_seconds: float,
        max_concurrent_logins: int,
        wait_seconds: float,
        username_format: UsernameFormat,
        proxies: ProxyPolicy,
        greet: Callable[[], Awaitable[frozenset[str]]],
        username_claim: str | None = None,
    ) -> None:
        self._pool = pool
        self._secret = secret
        self._throttle = throttle
        self._cache_seconds = cache_seconds
        self._salt = secrets.token_bytes(32)
        self._verified: dict[bytes, _Verified] = {}
        self._refused: dict[bytes, float] = {}
        self._flights: SharedCall[str] = SharedCall()
        self._all = Shares(max_concurrent_logins, "all")
        self._per_address = Shares(max(1, max_concurrent_logins // 4), "address")
        self._per_username = Shares(PER_USERNAME, "user name")
        self._wait = wait_seconds
        self.username_format = username_format
        self.proxies = proxies
        self._username_claim = username_claim
        # Learned from the upstream's greeting: None until a connection was opened.
        self._mechanisms: frozenset[str] | None = None
        self._greet = greet
        self._greeting_flight: SharedCall[frozenset[str]] = SharedCall()
        self._next_probe = 0.0

    def note_greeting(self, capabilities: frozenset[str]) -> None:
        """Remember the SASL mechanisms the upstream offers before login (every connection
        the pool opens tells)."""
        self._mechanisms = frozenset(c for c in capabilities if c.startswith("AUTH="))

    async def takes_bearer(self) -> bool:
        """Whether the upstream takes OAuth bearer tokens (OAUTHBEARER or XOAUTH2); asked
        once with a greeting when no connection told yet, at most every few seconds."""
        if self._mechanisms is None and time.monotonic() >= self._next_probe:
            self._next_probe = time.monotonic() + GREETING_PROBE_INTERVAL
            with contextlib.suppress(ImapError, TimeoutError):
                async with asyncio.timeout(GREETING_PROBE_TIMEOUT):
                    self.note_greeting(await self._greeting_flight.run(b"", self._greet))
        return bool(self._mechanisms and self._mechanisms & BEARER_MECHANISMS)

    async def authenticate(self, header: str | None, origin: Origin | None) -> Principal:
        """The caller; Unauthenticated or Throttled for refused credentials, ImapError for
        upstream trouble."""
        credentials = parse_authorization(header, origin, self._username_claim)
        bearer = credentials.mechanism is Mechanism.BEARER
        if bearer and not await self.takes_bearer():
            raise Unauthenticated("the mail server takes no bearer tokens; use Basic")
        key = self._cache_key(credentials)
        now = time.monotonic()
        if self._refused.get(key, 0.0) > now:
            raise Unauthenticated("the upstream refused the credentials", bearer=bearer)
        verified = self._verified.get(key)
        if verified is not None and verified.until > now:
            identity = verified.identity
        else:
            identity = await self._flights.run(key, lambda: self._check(credentials, key))
        account_id = account_id_for(await self._secret(), identity)
        return Principal(Login(identity, credentials), account_id)

    async def recheck(self, credentials: Credentials, origin: Origin | None) -> None:
        """Check again credentials that authenticated a long-lived push stream; raises
        Unauthenticated once the upstream refuses them (a changed password, a revoked token).

        Goes through the same cache as :meth:`authenticate`: free while the last success is
        fresh (``GATEWAY_AUTH_CACHE_SECONDS``), one upstream login when it expired. When the
        check cannot be made (the upstream is down, the user's failed logins are throttled)
        the stream keeps going until the next recheck: refusing would let anyone who sends
        wrong passwords for a user cut that user's streams.
        """
        if origin is not None:
            credentials = dataclasses.replace(credentials, origin=origin)
        key = self._cache_key(credentials)
        now = time.monotonic()
        if self._refused.get(key, 0.0) > now:
            raise Unauthenticated("the upstream refused the credentials")
        verified = self._verified.get(key)
        if verified is not None and verified.until > now:
            return
        try:
            await self._flights.run(key, lambda: self._check(credentials, key))
        except (Throttled, ImapError) as exc:
            log.info("push credentials not rechecked this time: %s", type(exc).__name__)

    async def server_secret(self) -> bytes:
        """The key account ids derive from; push tokens derive theirs from it too."""
        return await self._secret()

    async def challenge(self, refused: Unauthenticated) -> str:
        """The ``WWW-Authenticate`` value of a 401: Basic, and Bearer where the upstream
        takes tokens (RFC 6750 3.1: with ``invalid_token`` after a refused one)."""
        challenges = ['Basic realm="jmap-gateway", charset="UTF-8"']
        if await self.takes_bearer():
            error = ', error="invalid_token"' if refused.bearer else ""
            challenges.append(f'Bearer realm="jmap-gateway"{error}')
        return ", ".join(challenges)

    async def _check(self, credentials: Credentials, key: bytes) -> str:
        bearer = credentials.mechanism is Mechanism.BEARER
        keys = self._throttle_keys(await self._secret(), credentials)
        wait = await self._throttle.wait_seconds(keys)
        if wait > 0:
            raise Throttled("Too many failed logins; try again later.", wait)
        try:
            async with self._shares(credentials):
                login = await self._pool.login(credentials)
        except AuthenticationFailed:
            now = time.monotonic()
            self._prune(now)
            # The same wrong credentials again within a few seconds are refused without asking.
            self._refused[key] = now + REFUSAL_MEMORY_SECONDS
            await self._throttle.failed(keys)
            raise Unauthenticated("the upstream refused the credentials", bearer=bearer) from None
        await self._throttle.succeeded(keys)
        if self._cache_seconds > 0:
            now = time.monotonic()
            self._prune(now)
            self._verified[key] = _Verified(login.identity, now + self._cache_seconds)
        return login.identity

    @contextlib.asynccontextmanager
    async def _shares(self, credentials: Credentials) -> AsyncIterator[None]:
        """Hold the check's shares (see :mod:`gateway.login_gate`) while it runs."""
        deadline = time.monotonic() + self._wait
        stack = contextlib.AsyncExitStack()
        try:
            address = _address_bucket(credentials.origin)
            await stack.enter_async_context(self._per_address.hold(address, deadline))
            if credentials.username:
                name = self.username_format.throttle_key(credentials.username)
                await stack.enter_async_context(self._per_username.hold(name, deadline))
            await stack.enter_async_context(self._all.hold(None, deadline))
        except NoShare as exc:
            await stack.aclose()
            if exc.scope == "all":
                raise UpstreamUnavailable("too many credential checks in progress") from None
            raise Throttled(f"Too many logins in progress for this {exc.scope}.", 1) from None
        except BaseException:
            await stack.aclose()
            raise
        async with stack:
            yield

    def _throttle_keys(self, secret: bytes, credentials: Credentials) -> LoginKeys:
        address = _address_bucket(credentials.origin)
        username = (
            self.username_format.throttle_key(credentials.username) if credentials.username else ""
        )

        def digest(kind: str, value: str) -> str:
            mac = hmac.new(secret, f"login-{kind}\0{value}".encode(), hashlib.sha256)
            return base64.b32encode(mac.digest()[:20]).decode().lower()

        return LoginKeys(
            address=digest("address", address),
            username=digest("user", username) if username else "",
            pair=digest("pair", f"{username}\0{address}"),
        )

    def _cache_key(self, credentials: Credentials) -> bytes:
        material = "\0".join(
            (credentials.mechanism.value, credentials.username, credentials.secret)
        )
        return hmac.new(self._salt, material.encode(), hashlib.sha256).digest()

    def _prune(self, now: float) -> None:
        for key in [key for key, until in self._refused.items() if until <= now]:
            del self._refused[key]
        for key in [key for key, entry in self._verified.items() if entry.until <= now]:
            del self._verified[key]


def _address_bucket(origin: Origin | None) -> str:
    """The client address failed logins count under; IPv6 by its /64."""
    if origin is None:
        return "-"
    address = ipaddress.ip_address(origin.address)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)
