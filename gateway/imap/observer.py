"""What a connection tells an observer (metrics) about its work, with bounded names only.

The IMAP layer knows nothing of Prometheus: a connection reports to an :class:`ImapObserver`
given with its :class:`~gateway.imap.connection.Endpoint`. Everything reported is a word from
a small closed set (a command verb, an outcome), never an argument: arguments carry mailbox
names, UIDs and user names, which must not become metric labels.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from typing import Protocol

from gateway.imap.commands import Command
from gateway.imap.errors import (
    CommandFailed,
    CommandTimeout,
    ConnectionLost,
    ImapError,
    ProtocolError,
    UpstreamUnavailable,
)

# The commands the gateway sends (RFC 9051 6 and the extensions it uses); UID forms are named
# "UID FETCH" etc. Anything else is reported as OTHER, so a label can never grow unbounded.
VERBS = frozenset(
    {
        "APPEND",
        "AUTHENTICATE",
        "CAPABILITY",
        "CHECK",
        "CLOSE",
        "COPY",
        "CREATE",
        "DELETE",
        "ENABLE",
        "EXAMINE",
        "EXPUNGE",
        "FETCH",
        "GETMETADATA",
        "ID",
        "IDLE",
        "LIST",
        "LOGIN",
        "LOGOUT",
        "LSUB",
        "MOVE",
        "NAMESPACE",
        "NOOP",
        "RENAME",
        "SEARCH",
        "SELECT",
        "STARTTLS",
        "STATUS",
        "STORE",
        "SUBSCRIBE",
        "UNSELECT",
        "UNSUBSCRIBE",
    }
)
UID_VERBS = frozenset({"COPY", "EXPUNGE", "FETCH", "MOVE", "SEARCH", "STORE"})
OTHER = "OTHER"
PIPELINE = "PIPELINE"

# Tagged completions (RFC 9051 7.1) as outcomes.
_STATUS_OUTCOMES = {"OK": "ok", "NO": "no", "BAD": "bad"}


class ImapObserver(Protocol):
    """Receives what connections did; must be cheap and must not raise."""

    def command(self, verb: str, outcome: str) -> None:
        """One command ended: "ok", "no", "bad", or how it failed (see :func:`failure`)."""

    def round_trip(self, name: str, seconds: float) -> None:
        """Commands sent together were answered; ``name`` is :func:`round_trip_name`."""

    def connect(self, outcome: str) -> None:
        """A connection attempt ended: "ok", "timeout", "unreachable", "tls", "refused",
        "protocol_error", or "cancelled" (its caller gave up first, as a readiness check
        does after its own timeout)."""


def verb(command: Command) -> str:
    """The command's verb for a label: "LIST", "UID FETCH", or OTHER."""
    words = command.name.split(" ")
    if words[0] == "UID":
        # Built as Command("UID", "FETCH", ...) or Command("UID FETCH", ...).
        first = command.args[0] if command.args else None
        sub = words[1] if len(words) > 1 else first.upper() if isinstance(first, str) else ""
        return f"UID {sub}" if sub in UID_VERBS else OTHER
    return command.name if command.name in VERBS else OTHER


def round_trip_name(commands: Sequence[Command]) -> str:
    """The verb of a lone command; PIPELINE for several sent together (their mix varies)."""
    return verb(commands[0]) if len(commands) == 1 else PIPELINE


def completion(status: str) -> str:
    return _STATUS_OUTCOMES.get(status, "protocol_error")


def failure(exc: BaseException) -> str:
    """How a command failed without a tagged completion; the kinds of gateway.imap.errors."""
    if isinstance(exc, CommandFailed):
        return completion(exc.status)
    if isinstance(exc, CommandTimeout):
        return "timeout"
    if isinstance(exc, ConnectionLost | OSError):
        return "connection_lost"
    if isinstance(exc, ProtocolError):
        return "protocol_error"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "error"


def connect_failure(exc: BaseException) -> str:
    """How opening a connection failed (before :class:`UpstreamUnavailable` hides it)."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, OSError):
        return "unreachable"
    if isinstance(exc, UpstreamUnavailable | ConnectionLost):
        # Closed at once, a greeting other than OK, or no STARTTLS where it is required.
        return "refused"
    if isinstance(exc, ImapError):
        return "protocol_error"
    return failure(exc)
