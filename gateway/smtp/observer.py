"""What the SMTP client tells an observer (metrics), in words from small closed sets only.

Like :mod:`gateway.imap.observer`: addresses and reply texts never become labels.
"""

from __future__ import annotations

import ssl
from typing import Protocol

import aiosmtplib

# The commands the gateway sends; "." is the end of DATA (its reply is the message's fate).
COMMANDS = frozenset({"EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", ".", "RSET", "QUIT"})


class SmtpObserver(Protocol):
    """Receives what the client did; must be cheap and must not raise."""

    def smtp_connect(self, outcome: str) -> None:
        """A connection attempt ended: "ok", "timeout", "unreachable", "tls", "refused"
        (a greeting other than 220, no STARTTLS where required, EHLO refused), "auth"
        (AUTH refused), or "cancelled"."""

    def smtp_command(self, command: str, outcome: str) -> None:
        """A command of :data:`COMMANDS` ended: its reply class ("2xx", "3xx", "4xx", "5xx")
        or "timeout" / "connection_lost"."""

    def smtp_transaction(self, outcome: str, seconds: float) -> None:
        """A send ended: "sent" (all recipients), "partial", "refused" (a 5xx), "transient"
        (4xx or cut before the final "."), "ambiguous" (cut after it)."""


def reply_class(code: int) -> str:
    return f"{code // 100}xx" if 200 <= code < 600 else "protocol_error"


def connect_failure(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPConnectTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__, ssl.SSLError):
        return "tls"
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return "refused"
    if isinstance(exc, aiosmtplib.SMTPConnectError | OSError):
        return "unreachable"
    return "refused"
