"""One SMTP session (RFC 5321, RFC 6409 submission): connect, greeting, STARTTLS, EHLO, AUTH.

Built on aiosmtplib's connection and its ``execute_command``: the gateway sends each command
itself (so every reply, positive or not, comes back as a :class:`Reply` and every step has its
own timeout) and leaves the wire format, TLS and dot-stuffing to the library.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ssl
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Literal

import aiosmtplib

from gateway.credentials import Credentials, Mechanism
from gateway.sasl import (
    OAUTHBEARER_ABORT,
    oauthbearer_initial_response,
    plain_initial_response,
    xoauth2_initial_response,
)
from gateway.smtp.extensions import Extensions
from gateway.smtp.observer import COMMANDS, SmtpObserver, connect_failure, reply_class
from gateway.smtp.outcome import AuthenticationRefused, Phase, SmtpFailure, SmtpUnavailable
from gateway.smtp.replies import Reply

TlsMode = Literal["plain", "starttls", "implicit"]


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each step.

    RFC 5321 4.5.3.2 asks a client to wait 5 minutes for the greeting, MAIL and RCPT, 2 for
    DATA, 3 per block of data and 10 for the reply to the final "." (a server may run filters
    first). A JMAP request cannot wait that long, and a submission server next to the gateway
    answers in milliseconds, so these are shorter; the final reply keeps the longest, because
    giving up on it leaves the message's fate unknown (RFC 1047).
    """

    connect: float = 10.0  # TCP, TLS handshake and the 220 greeting
    command: float = 30.0  # EHLO, STARTTLS, AUTH, MAIL, each RCPT, DATA, RSET, QUIT
    data_block: float = 60.0  # each block of the message written while the server reads
    final: float = 120.0  # the reply to the final "."


@dataclass(frozen=True)
class SmtpEndpoint:
    """Where the submission server is and how to reach it."""

    host: str
    port: int
    tls: TlsMode = "plain"
    ssl_context: ssl.SSLContext | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    local_hostname: str | None = None  # the EHLO name; None: this host's FQDN


@dataclass(frozen=True)
class Authorization:
    """How one transaction authenticates.

    ``credentials`` None: no AUTH (a relay that trusts the gateway). Otherwise AUTH with them:
    the user's own (PLAIN or LOGIN for a password, OAUTHBEARER or XOAUTH2 for a token), or a
    service account's acting for ``authorize_as`` (RFC 4616 PLAIN with an authzid).
    """

    credentials: Credentials | None = None
    authorize_as: str | None = None

    @classmethod
    def user(cls, credentials: Credentials) -> Authorization:
        return cls(credentials)

    @classmethod
    def service(cls, account: Credentials, user: str) -> Authorization:
        return cls(account, user)

    @classmethod
    def none(cls) -> Authorization:
        return cls()

    @property
    def pool_key(self) -> tuple[str, ...]:
        """Which idle sessions this authorization may take over: those logged in the same way
        with the same secret (a digest, kept in memory only), so knowing a user name never
        lends anyone another's authenticated session."""
        if self.credentials is None:
            return ("none",)
        digest = hashlib.sha256(self.credentials.secret.encode()).hexdigest()
        return (
            self.credentials.mechanism.value,
            self.credentials.username,
            self.authorize_as or "",
            digest,
        )


@dataclass(eq=False)
class Session:
    """An open session, ready for MAIL: greeted, EHLO done (after STARTTLS), authenticated."""

    smtp: aiosmtplib.SMTP
    extensions: Extensions
    observer: SmtpObserver | None
    timeouts: Timeouts
    idle_since: float = field(default_factory=time.monotonic)

    async def command(self, phase: Phase, name: str, *args: bytes, timeout: float) -> Reply:
        """Send one command and return its reply, whatever its code; no reply is a failure
        of ``phase`` (the library closes the connection then)."""
        return await self.reply(phase, name, self.smtp.execute_command(*args, timeout=timeout))

    async def reply(
        self, phase: Phase, name: str, pending: Awaitable[aiosmtplib.SMTPResponse]
    ) -> Reply:
        label = name if name in COMMANDS else "OTHER"
        try:
            response = await pending
        except (aiosmtplib.SMTPTimeoutError, TimeoutError) as exc:
            self._tell(label, "timeout")
            raise SmtpFailure(phase, None, detail="timed out") from exc
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            self._tell(label, "connection_lost")
            raise SmtpFailure(phase, None, detail="connection lost") from exc
        except aiosmtplib.SMTPResponseException as exc:
            self._tell(label, "protocol_error")
            self.smtp.close()
            raise SmtpFailure(phase, None, detail="malformed reply") from exc
        self._tell(label, reply_class(response.code))
        return Reply.parse(response.code, response.message)

    def _tell(self, command: str, outcome: str) -> None:
        if self.observer is not None:
            self.observer.smtp_command(command, outcome)

    @property
    def usable(self) -> bool:
        return self.smtp.is_connected

    async def quit(self) -> None:
        """Say goodbye if the server still listens; close in any case."""
        if self.smtp.is_connected:
            with contextlib.suppress(SmtpFailure):
                await self.command(Phase.MAIL, "QUIT", b"QUIT", timeout=self.timeouts.command)
        self.smtp.close()


async def open_session(
    endpoint: SmtpEndpoint, auth: Authorization | None, observer: SmtpObserver | None
) -> Session:
    """Connect, read the greeting, STARTTLS when asked, EHLO, and AUTH unless ``auth`` is None
    (a probe) or names no credentials; raises :class:`SmtpUnavailable` or
    :class:`AuthenticationRefused`."""
    timeouts = endpoint.timeouts
    smtp = aiosmtplib.SMTP(
        hostname=endpoint.host,
        port=endpoint.port,
        use_tls=endpoint.tls == "implicit",
        start_tls=False,
        tls_context=endpoint.ssl_context,
        local_hostname=endpoint.local_hostname,
        timeout=timeouts.connect,
    )
    try:
        session = await _greeted(smtp, endpoint, observer)
        if auth is not None and auth.credentials is not None:
            await _authenticate(session, auth.credentials, auth.authorize_as)
    except SmtpFailure as failure:
        smtp.close()
        if observer is not None:
            observer.smtp_connect(_connect_outcome(failure))
        raise
    except asyncio.CancelledError:
        smtp.close()
        if observer is not None:
            observer.smtp_connect("cancelled")
        raise
    if observer is not None:
        observer.smtp_connect("ok")
    return session


async def _greeted(
    smtp: aiosmtplib.SMTP, endpoint: SmtpEndpoint, observer: SmtpObserver | None
) -> Session:
    timeouts = endpoint.timeouts
    try:
        await smtp.connect(timeout=timeouts.connect)
    except aiosmtplib.SMTPConnectResponseError as exc:
        raise SmtpUnavailable(Phase.GREETING, Reply.parse(exc.code, exc.message)) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise _Unreached(Phase.CONNECT, connect_failure(exc), str(exc)) from exc
    session = Session(smtp, Extensions(), observer, timeouts)
    extensions = await _ehlo(session, endpoint)
    if endpoint.tls == "starttls":
        # RFC 3207 4: STARTTLS must be announced; without it the gateway will not go on in
        # clear (the operator asked for TLS).
        if not extensions.has("STARTTLS"):
            raise SmtpUnavailable(Phase.STARTTLS, None, detail="STARTTLS not offered")
        reply = await session.reply(
            Phase.STARTTLS,
            "STARTTLS",
            _starttls(smtp, endpoint),
        )
        if reply.code != 220:
            raise SmtpUnavailable(Phase.STARTTLS, reply)
        # RFC 3207 4.2: forget what was learnt before TLS and ask again.
        extensions = await _ehlo(session, endpoint)
    session.extensions = extensions
    return session


async def _starttls(smtp: aiosmtplib.SMTP, endpoint: SmtpEndpoint) -> aiosmtplib.SMTPResponse:
    try:
        return await smtp.starttls(
            tls_context=endpoint.ssl_context, timeout=endpoint.timeouts.connect
        )
    except aiosmtplib.SMTPResponseException as exc:
        return aiosmtplib.SMTPResponse(exc.code, exc.message)
    except (ssl.SSLError, aiosmtplib.SMTPException) as exc:
        smtp.close()
        raise _Unreached(Phase.STARTTLS, "tls", f"TLS: {exc}") from exc


async def _ehlo(session: Session, endpoint: SmtpEndpoint) -> Extensions:
    # Through the library's ehlo(), which also notes the extensions its starttls() checks.
    reply = await session.reply(
        Phase.EHLO, "EHLO", _library_ehlo(session.smtp, endpoint.timeouts.command)
    )
    if reply.code != 250:
        raise SmtpUnavailable(Phase.EHLO, reply)
    return Extensions.parse(reply.text)


async def _library_ehlo(smtp: aiosmtplib.SMTP, timeout: float) -> aiosmtplib.SMTPResponse:
    try:
        return await smtp.ehlo(timeout=timeout)
    except aiosmtplib.SMTPHeloError as exc:
        return aiosmtplib.SMTPResponse(exc.code, exc.message)


class _Unreached(SmtpUnavailable):
    """The server was never reached, or TLS never set up; ``kind`` is the metric outcome."""

    def __init__(self, phase: Phase, kind: str, detail: str) -> None:
        super().__init__(phase, None, detail=detail)
        self.kind = kind


def _connect_outcome(failure: SmtpFailure) -> str:
    if isinstance(failure, _Unreached):
        return failure.kind
    if isinstance(failure, AuthenticationRefused):
        return "auth"
    if failure.reply is None:
        return "timeout" if failure.detail == "timed out" else "unreachable"
    return "refused"


# What the gateway says when the server offers no AUTH mechanism its login can use (RFC 4954
# 6's 530, "authentication required", which the caller turns into a refusal to send).
_NO_MECHANISM = Reply(530, "5.7.0", "the submission server offers no AUTH mechanism for this login")


async def _authenticate(session: Session, credentials: Credentials, authzid: str | None) -> None:
    """RFC 4954: AUTH with an initial response; any reply but 235 refuses."""
    offered = {m.upper() for m in session.extensions.keywords.get("AUTH", ())}
    timeout = session.timeouts.command
    user, secret = credentials.username, credentials.secret
    # Only a mechanism the server offers: a secret is never sent to a server that did not ask
    # for it (a server hiding AUTH before TLS, or a relay the operator misconfigured).
    if credentials.mechanism is Mechanism.BEARER and "OAUTHBEARER" in offered:
        initial = oauthbearer_initial_response(authzid or user or None, secret)
        mechanism = b"OAUTHBEARER"
    elif credentials.mechanism is Mechanism.BEARER and "XOAUTH2" in offered:
        initial = xoauth2_initial_response(authzid or user, secret)
        mechanism = b"XOAUTH2"
    elif credentials.mechanism is Mechanism.PASSWORD and "PLAIN" in offered:
        initial = plain_initial_response(user, secret, authzid or "")
        mechanism = b"PLAIN"
    elif credentials.mechanism is Mechanism.PASSWORD and "LOGIN" in offered and not authzid:
        await _login(session, user, secret)
        return
    else:
        raise AuthenticationRefused(Phase.AUTH, _NO_MECHANISM)
    reply = await session.command(
        Phase.AUTH, "AUTH", b"AUTH", mechanism, initial.encode("ascii"), timeout=timeout
    )
    if reply.code == 334:
        # An error challenge: RFC 7628 3.2.3 has OAUTHBEARER answer it with %x01; XOAUTH2's
        # documentation, with an empty line. The server then sends its failure.
        answer = OAUTHBEARER_ABORT.encode() if mechanism == b"OAUTHBEARER" else b""
        reply = await session.command(Phase.AUTH, "AUTH", answer, timeout=timeout)
    if reply.code != 235:
        raise AuthenticationRefused(Phase.AUTH, reply)


async def _login(session: Session, user: str, secret: str) -> None:
    """The LOGIN mechanism (draft-murchison-sasl-login): user and password, each base64."""
    timeout = session.timeouts.command
    steps = [b"AUTH LOGIN", base64.b64encode(user.encode()), base64.b64encode(secret.encode())]
    reply: Reply | None = None
    for step in steps:
        reply = await session.command(Phase.AUTH, "AUTH", *step.split(b" "), timeout=timeout)
        if reply.code != 334:
            break
    if reply is None or reply.code != 235:
        raise AuthenticationRefused(Phase.AUTH, reply)
