"""Wiring from settings to upstream connections: TLS contexts, the IMAP connector and pool,
the SMTP sender."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Callable

from gateway.config import Settings, TlsMode, UpstreamUrl
from gateway.credentials import Credentials
from gateway.imap.connection import Endpoint, ImapConnection
from gateway.imap.errors import AuthenticationFailed
from gateway.imap.identity import identity_request, inbox_identity
from gateway.imap.observer import ImapObserver
from gateway.imap.pool import ImapPool
from gateway.smtp.connection import Authorization, SmtpEndpoint
from gateway.smtp.observer import SmtpObserver
from gateway.smtp.sender import SmtpSender
from gateway.usernames import UsernameFormat

log = logging.getLogger(__name__)


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Verify upstream certificates against the system store or ``tls_ca_file``."""
    context = ssl.create_default_context(
        cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
    )
    if settings.tls_insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def imap_endpoint(settings: Settings, observer: ImapObserver | None = None) -> Endpoint:
    url: UpstreamUrl = settings.imap
    return Endpoint(
        host=url.host,
        port=url.port,
        tls=url.tls.value,
        ssl_context=None if url.tls is TlsMode.PLAIN else tls_context(settings),
        connect_timeout=settings.imap_connect_timeout,
        command_timeout=settings.imap_command_timeout,
        observer=observer,
    )


def imap_pool(
    settings: Settings,
    endpoint: Endpoint | None = None,
    on_greeting: Callable[[frozenset[str]], None] | None = None,
) -> ImapPool:
    """The pool of logged-in connections to ``endpoint`` (default: the configured one).

    ``on_greeting`` is told the capabilities every new connection offers before login (the
    SASL mechanisms the upstream takes).
    """
    endpoint = endpoint or imap_endpoint(settings)
    username_format = UsernameFormat(settings.username_format)

    async def connect(credentials: Credentials) -> tuple[ImapConnection, str]:
        conn = await ImapConnection.open(endpoint)
        try:
            if on_greeting is not None:
                on_greeting(conn.capabilities)
            await conn.login(
                credentials.username,
                credentials.secret,
                mechanism=credentials.mechanism,
                origin=credentials.origin,
                acting_for=credentials.acting_for,
            )
            identity = await _enable_and_identify(conn, username_format, credentials)
        except BaseException:
            await conn.logout()
            raise
        return conn, identity

    return ImapPool(
        connect,
        max_per_user=settings.pool_max_per_user,
        max_total=settings.pool_max_total,
        idle_timeout=settings.pool_idle_timeout,
        wait_timeout=settings.pool_wait_timeout,
    )


async def _enable_and_identify(
    conn: ImapConnection, username_format: UsernameFormat, credentials: Credentials
) -> str:
    """ENABLE what the sync follows changes with, and learn whose the login is, in one round
    trip. RFC 5161: ENABLE only before a mailbox is selected. QRESYNC implies CONDSTORE
    (RFC 7162 3.2.3); both let the email sync follow changes by modseq."""
    enable = conn.enable_command("QRESYNC" if "QRESYNC" in conn.capabilities else "CONDSTORE")
    ask, item = identity_request(conn)
    *enabled, asked = await conn.execute_pipelined(*([enable] if enable else []), ask, check=False)
    for result in enabled:
        conn.note_enabled(result)
    return inbox_identity(asked, item) or fallback_identity(username_format, credentials)


# The prefix of an identity made from the user name (no INBOX id from the upstream).
FALLBACK_PREFIX = "user:"


def fallback_identity(username_format: UsernameFormat, credentials: Credentials) -> str:
    """The user's identity where the upstream keeps no INBOX id: their user name as the
    operator says the upstream normalises it (GATEWAY_USERNAME_FORMAT).

    Built from the very name that was asked for, it proves nothing about which mailbox a
    login reached: a master user's login acting for someone (background watching) cannot be
    checked with it (see :func:`identifies_by_mailbox`)."""
    if not credentials.user:
        # A bearer token that named nobody, on a server that says nothing of its user.
        raise AuthenticationFailed("NO", None, "the upstream does not say whose token this is")
    # A master user's login is the user's acted for, never the master's own.
    return FALLBACK_PREFIX + username_format.apply(credentials.user)


def identifies_by_mailbox(identity: str) -> bool:
    """Whether ``identity`` is the upstream's id of the INBOX the login reached (RFC 8474
    MAILBOXID, Dovecot's X-GUID), not :func:`fallback_identity`'s name: only such an identity
    tells users apart whatever name was asked for."""
    return not identity.startswith(FALLBACK_PREFIX)


def smtp_endpoint(settings: Settings) -> SmtpEndpoint | None:
    """The submission server of GATEWAY_SMTP_URL (None: sending is not configured), with TLS
    verified like IMAP's (GATEWAY_TLS_CA_FILE, or the system's CAs)."""
    url = settings.smtp
    if url is None:
        return None
    return SmtpEndpoint(
        host=url.host,
        port=url.port,
        tls=url.tls.value,
        ssl_context=None if url.tls is TlsMode.PLAIN else tls_context(settings),
    )


def smtp_sender(settings: Settings, observer: SmtpObserver | None = None) -> SmtpSender | None:
    endpoint = smtp_endpoint(settings)
    if endpoint is None:
        return None
    if endpoint.tls == "plain" and not _loopback(endpoint.host) and _sends_secrets(settings):
        log.warning(
            "GATEWAY_SMTP_URL is smtp:// without ?starttls to %s, which is not a loopback "
            "address: users' passwords would cross the network in clear (use smtps:// or "
            "?starttls)",
            endpoint.host,
        )
    return SmtpSender(endpoint, observer)


def background_authorization(settings: Settings, username: str) -> Authorization | None:
    """How a message of ``username`` is sent with the user absent (delayed sending): as the
    service account acting for them, else without AUTH where the relay trusts the gateway;
    None: it cannot be (the gateway keeps no user passwords)."""
    password = settings.smtp_service_password
    if settings.smtp_service_username is not None and password is not None:
        service = Credentials(settings.smtp_service_username, password.get_secret_value())
        return Authorization.service(service, username)
    if settings.smtp_auth == "none":
        return Authorization.none()
    return None


def request_authorization(settings: Settings, credentials: Credentials) -> Authorization:
    """How a message is sent while its user's request runs (GATEWAY_SMTP_AUTH)."""
    if settings.smtp_auth == "none":
        return Authorization.none()
    return Authorization.user(credentials)


def _sends_secrets(settings: Settings) -> bool:
    return settings.smtp_auth == "user" or settings.smtp_service_username is not None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
