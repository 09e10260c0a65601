"""Wiring from settings to upstream connections: TLS contexts, the IMAP connector and pool."""

from __future__ import annotations

import ssl
from collections.abc import Callable

from gateway.config import Settings, TlsMode, UpstreamUrl
from gateway.credentials import Credentials
from gateway.imap.connection import Endpoint, ImapConnection
from gateway.imap.errors import AuthenticationFailed
from gateway.imap.identity import identity_request, inbox_identity
from gateway.imap.observer import ImapObserver
from gateway.imap.pool import ImapPool
from gateway.usernames import UsernameFormat


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


def fallback_identity(username_format: UsernameFormat, credentials: Credentials) -> str:
    """The user's identity where the upstream keeps no INBOX id: their user name as the
    operator says the upstream normalises it (GATEWAY_USERNAME_FORMAT)."""
    if not credentials.username:
        # A bearer token that named nobody, on a server that says nothing of its user.
        raise AuthenticationFailed("NO", None, "the upstream does not say whose token this is")
    return "user:" + username_format.apply(credentials.username)
