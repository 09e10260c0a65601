"""Which addresses a user may send from, as the operator describes it (GATEWAY_IDENTITY_ADDRESSES).

The gateway sends with the user's own credentials, and a submission server that checks
senders (Postfix's ``reject_sender_login_mismatch``) refuses a foreign From only at RCPT, after
the client was told the Identity was fine. So the operator states the rule once, here, and the
gateway applies it before anything is stored or sent: Identity/set refuses an identity for an
address outside it (RFC 8621 6.3 ``forbiddenFrom``) and sending checks the envelope with it.

The user's own address is the login as the upstream spells it (GATEWAY_USERNAME_FORMAT) when
that is an address, else that name at GATEWAY_MAIL_DOMAIN, lower-cased; a user with neither
has no address of their own, and patterns naming it allow them nothing.

A pattern is ``{address}`` (the user's own address), or ``local@domain`` made of literal text,
``{local}`` and ``{domain}`` (the parts of the user's address) and ``*`` (one or more characters
other than ``@``). Addresses are compared without regard to case, as mail systems do in
practice.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# RFC 5321 4.5.3.1.3: a path is at most 256 octets, so an address at most 254.
MAX_ADDRESS_LENGTH = 254
MAX_PATTERNS = 50
ADDRESS = "{address}"
_PLACEHOLDERS = ("{address}", "{local}", "{domain}")
_TOKEN = re.compile(r"\{address\}|\{local\}|\{domain\}|\*|[A-Za-z0-9.!#$%&'+/=?^_`|~@-]")
# RFC 1035 2.3.1 labels, with the digits-first names RFC 1123 allows.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# What the gateway accepts as an address: dot-atom local parts and a domain (RFC 5322 3.4.1);
# quoted local parts are rare enough in sending identities to be refused rather than risked.
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def check_domain(value: str) -> str:
    """``value`` as a lower-case domain name, or ValueError."""
    domain = value.strip().lower().rstrip(".")
    labels = domain.split(".")
    if len(domain) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{value!r} is not a domain name")
    return domain


def is_address(value: str) -> bool:
    """``value`` is an address the gateway will put in an Identity: local@domain, dot-atom."""
    if len(value) > MAX_ADDRESS_LENGTH:
        return False
    local, at, domain = value.rpartition("@")
    if not at or not _LOCAL.fullmatch(local) or len(local) > 64:
        return False
    try:
        check_domain(domain)
    except ValueError:
        return False
    return domain == domain.strip() and not domain.endswith(".")


def own_address(name: str, mail_domain: str | None) -> str | None:
    """The user's own address from the upstream's spelling of their ``name``: the name when
    it is an address, else name@``mail_domain``; None without either."""
    candidate = name if "@" in name else f"{name}@{mail_domain}" if mail_domain and name else ""
    candidate = candidate.lower()
    return candidate if is_address(candidate) else None


@dataclass(frozen=True)
class SenderPolicy:
    """The parsed patterns; :meth:`allows` says whether one user may send from an address."""

    patterns: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> SenderPolicy:
        patterns = tuple(p.strip() for p in text.split(",") if p.strip())
        if not patterns:
            raise ValueError("must name at least one pattern, e.g. {address}")
        if len(patterns) > MAX_PATTERNS:
            raise ValueError(f"at most {MAX_PATTERNS} patterns")
        for pattern in patterns:
            _check_pattern(pattern)
        return cls(patterns)

    def allows(self, address: str, own: str | None) -> bool:
        """``address`` matches a pattern for the user whose own address is ``own``."""
        if not is_address(address):
            return False
        return any(
            (regex := _compile(pattern, own)) is not None and regex.fullmatch(address) is not None
            for pattern in self.patterns
        )


def _check_pattern(pattern: str) -> None:
    tokens = _TOKEN.findall(pattern)
    if "".join(tokens) != pattern:
        raise ValueError(
            f"{pattern!r}: only {{address}}, {{local}}, {{domain}}, * and address text"
        )
    if ADDRESS in tokens and pattern != ADDRESS:
        raise ValueError(f"{pattern!r}: {{address}} stands alone")
    if pattern != ADDRESS:
        local, at, domain = pattern.partition("@")
        if not at or not local or not domain or "@" in domain:
            raise ValueError(f"{pattern!r} is not local@domain")
        if "{domain}" in local or "{local}" in domain:
            raise ValueError(f"{pattern!r}: {{local}} left of @ and {{domain}} right of it")


@functools.lru_cache(maxsize=1024)
def _compile(pattern: str, own: str | None) -> re.Pattern[str] | None:
    """The pattern as a regular expression for one user; None where it names the user's
    address and they have none. Each ``*`` stops at the next literal piece and never crosses
    ``@``, and addresses are at most 254 characters, so matching stays cheap."""
    if own is None and any(p in pattern for p in _PLACEHOLDERS):
        return None
    local, _, domain = (own or "").rpartition("@")
    values = {"{address}": own or "", "{local}": local, "{domain}": domain}
    pieces = [
        "[^@]+" if piece == "*" else re.escape(values.get(piece, piece))
        for piece in _TOKEN.findall(pattern)
    ]
    return re.compile("".join(pieces), re.IGNORECASE)
