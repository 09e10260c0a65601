"""The ESMTP extensions a server announces in its EHLO reply (RFC 5321 4.1.1.1)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# Keywords about the gateway's own conversation with the server, not about what a client may
# ask for in an envelope: the gateway authenticates, encrypts, and sends with DATA one command
# at a time (aiosmtplib has no BDAT, so CHUNKING and BINARYMIME cannot be used); VRFY, EXPN,
# ETRN and HELP are commands a JMAP client has no way to give.
TRANSPORT_ONLY = frozenset(
    {"AUTH", "STARTTLS", "PIPELINING", "CHUNKING", "BINARYMIME", "VRFY", "EXPN", "ETRN", "HELP"}
)
# RFC 5321 4.5.3.1.5 bounds a reply line; a server announcing more is not believed further.
MAX_KEYWORDS = 100
MAX_PARAMETERS = 20


@dataclass(frozen=True)
class Extensions:
    """The EHLO keywords (upper case) and their parameters, as received after STARTTLS."""

    keywords: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def parse(cls, ehlo_message: str) -> Extensions:
        """From the EHLO reply's lines (the first is the server's greeting name, RFC 5321
        4.1.1.1); a keyword given twice keeps its first parameters."""
        keywords: dict[str, tuple[str, ...]] = {}
        for line in ehlo_message.split("\n")[1:]:
            words = line.split()
            if not words or len(keywords) >= MAX_KEYWORDS:
                continue
            keyword = words[0].upper()
            # RFC 5321 4.1.1.1: ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
            if keyword.replace("-", "").isalnum() and keyword.isascii():
                keywords.setdefault(keyword, tuple(words[1 : 1 + MAX_PARAMETERS]))
        return cls(MappingProxyType(keywords))

    def has(self, keyword: str) -> bool:
        return keyword.upper() in self.keywords

    @property
    def size(self) -> int | None:
        """RFC 1870: the largest message the server takes; None when it names none (0 means
        no fixed limit)."""
        values = self.keywords.get("SIZE", ())
        if not values or not values[0].isdigit():
            return None
        return int(values[0]) or None

    def as_jmap(self) -> dict[str, list[str]]:
        """RFC 8621 1.3.2's submissionExtensions: what a client may ask for in an envelope."""
        return {k: list(v) for k, v in self.keywords.items() if k not in TRANSPORT_ONLY}

    @classmethod
    def from_jmap(cls, value: Mapping[str, list[str]]) -> Extensions:
        """Back from :meth:`as_jmap`'s form (as kept between runs)."""
        return cls(MappingProxyType({k.upper(): tuple(v) for k, v in value.items()}))
