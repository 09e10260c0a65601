"""The SMTP envelope (RFC 5321 2.3.1): MAIL FROM and RCPT TO with their ESMTP parameters."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# Hard bounds on what one transaction carries, whatever the caller checked before.
MAX_RECIPIENTS = 1000
MAX_PARAMETERS = 16

# RFC 5321 4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-");
# esmtp-value = 1*(%d33-60 / %d62-126 / UTF8-non-ascii) (RFC 6531 3.3): no space, "=", controls.
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_VALUE = re.compile(r"[^\x00-\x20=\x7f]+\Z")
# An address is sent inside <>: it may hold no controls, spaces or angle brackets.
_ADDRESS = re.compile(r"[^\x00-\x20<>\x7f]*\Z")


def _frozen(parameters: Mapping[str, str | None]) -> Mapping[str, str | None]:
    if len(parameters) > MAX_PARAMETERS:
        raise ValueError("too many ESMTP parameters")
    for keyword, value in parameters.items():
        if not _KEYWORD.match(keyword) or (value is not None and not _VALUE.match(value)):
            raise ValueError(f"malformed ESMTP parameter {keyword[:40]!r}")
    return MappingProxyType(dict(parameters))


def options(parameters: Mapping[str, str | None]) -> list[str]:
    """The parameters as MAIL/RCPT arguments: "KEY=value", or "KEY" for a keyword alone."""
    return [key if value is None else f"{key}={value}" for key, value in parameters.items()]


@dataclass(frozen=True)
class Recipient:
    """One RCPT TO: the forward path and its parameters (e.g. NOTIFY, ORCPT of RFC 3461)."""

    address: str
    parameters: Mapping[str, str | None] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not self.address or not _ADDRESS.match(self.address):
            raise ValueError("malformed recipient address")
        object.__setattr__(self, "parameters", _frozen(self.parameters))


@dataclass(frozen=True)
class Envelope:
    """MAIL FROM ("" for the null reverse path) with its parameters, and the recipients.

    The parameters are sent as given: dropping those the server does not announce is the
    caller's choice, so nothing is left out silently here.
    """

    mail_from: str
    parameters: Mapping[str, str | None]
    recipients: tuple[Recipient, ...]

    def __post_init__(self) -> None:
        if not _ADDRESS.match(self.mail_from):
            raise ValueError("malformed sender address")
        if not self.recipients:
            raise ValueError("an envelope needs at least one recipient")
        if len(self.recipients) > MAX_RECIPIENTS:
            raise ValueError("too many recipients")
        object.__setattr__(self, "parameters", _frozen(self.parameters))
