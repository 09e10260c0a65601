"""What a transaction came to: accepted (for some recipients at least) or a failure.

The failures say where they happened, because only that tells whether the message may have
been sent: RFC 5321 6.1 and RFC 1047: once the final "." is written, a lost reply leaves the
message possibly delivered, and sending it again may deliver it twice.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.smtp.replies import Reply


class Phase(enum.Enum):
    """The step a transaction was at; FINAL is the wait for the reply to the final "."."""

    CONNECT = "connect"
    GREETING = "greeting"
    STARTTLS = "starttls"
    EHLO = "ehlo"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    FINAL = "final"


@dataclass(frozen=True)
class Outcome:
    """The server took the message for ``accepted``; ``refused`` got a 4xx or 5xx at RCPT."""

    accepted: Mapping[str, Reply]
    refused: Mapping[str, Reply]
    final: Reply


class SmtpFailure(Exception):
    """Nothing was accepted, or it is unknown whether it was (:attr:`ambiguous`).

    ``reply`` is None when there was no reply: the connection failed, was cut or timed out.
    The message text holds the reply (a server's words about the envelope, never a secret).
    """

    def __init__(
        self,
        phase: Phase,
        reply: Reply | None,
        refused: Mapping[str, Reply] | None = None,
        *,
        detail: str = "",
    ) -> None:
        self.phase = phase
        self.reply = reply
        self.refused: Mapping[str, Reply] = MappingProxyType(dict(refused or {}))
        self.detail = detail
        said = str(reply) if reply is not None else detail or "no reply"
        super().__init__(f"SMTP {phase.value}: {said}")

    @property
    def transient(self) -> bool:
        """Safe to try again: a 4xx reply, or connection trouble before the final "."."""
        if self.reply is not None:
            return self.reply.transient
        return self.phase is not Phase.FINAL

    @property
    def ambiguous(self) -> bool:
        """Cut or timed out after the final "." and before its reply: it may have been sent."""
        return self.reply is None and self.phase is Phase.FINAL

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.phase.value!r}, {self.reply!s})"


class SmtpUnavailable(SmtpFailure):
    """The server could not be reached or spoken to (connect, greeting, TLS, EHLO)."""


class AuthenticationRefused(SmtpFailure):
    """AUTH failed (RFC 4954 6: 535 for bad credentials, 454 for a temporary failure)."""
