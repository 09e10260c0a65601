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

    @property
    def future_release(self) -> int | None:
        """RFC 4865 3: the longest hold, in seconds, the server takes (FUTURERELEASE's first
        parameter); None when it offers none."""
        values = self.keywords.get("FUTURERELEASE", ())
        if not values or not values[0].isdigit():
            return None
        return int(values[0]) or None

    def as_jmap(self) -> dict[str, list[str]]:
        """RFC 8621 1.3.2's submissionExtensions: what a client may ask for in an envelope."""
        return {k: list(v) for k, v in self.keywords.items() if k not in TRANSPORT_ONLY}

    def as_kept(self) -> dict[str, list[str]]:
        """Every keyword, for keeping between runs (:meth:`from_kept` reads it back)."""
        return {k: list(v) for k, v in self.keywords.items()}

    @classmethod
    def from_kept(cls, value: object) -> Extensions:
        """Back from :meth:`as_kept`'s form; ValueError when it is not that form."""
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(p, str) for p in v)
            for k, v in value.items()
        ):
            raise ValueError("not a kept EHLO answer")
        return cls(MappingProxyType({k.upper(): tuple(v) for k, v in value.items()}))
