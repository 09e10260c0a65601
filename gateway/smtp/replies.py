"""SMTP replies (RFC 5321 4.2) with their enhanced status codes (RFC 2034, RFC 3463)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 3463 2: class "." subject "." detail; RFC 2034 3: the code starts each reply line.
_ENHANCED = re.compile(r"([245]\.\d{1,3}\.\d{1,3})(?: |\Z)")


@dataclass(frozen=True)
class Reply:
    """One reply: its code, the enhanced status code when the server sent one, and the text.

    ``text`` holds the reply's lines joined by "\\n", each without its code and enhanced code.
    """

    code: int
    enhanced: str | None
    text: str

    @classmethod
    def parse(cls, code: int, message: str) -> Reply:
        """A reply from its code and its lines (as aiosmtplib gives them: codes removed).

        The enhanced code is taken only when every line starts with the same one, as RFC 2034 3
        has servers send it, so a line of plain text that happens to start with digits is kept.
        """
        lines = message.split("\n")
        found = [_ENHANCED.match(line) for line in lines]
        first = found[0]
        if first is None or any(m is None or m.group(1) != first.group(1) for m in found):
            return cls(code, None, message)
        return cls(
            code,
            first.group(1),
            "\n".join(line[m.end() :] for line, m in zip(lines, found, strict=True) if m),
        )

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def transient(self) -> bool:
        """RFC 5321 4.2.1: 4yz, the same command may succeed later."""
        return 400 <= self.code < 500

    def __str__(self) -> str:
        """The reply on one line: code, enhanced code, then the text lines joined by a space
        ("550 5.7.1 Our system has detected that this message is likely spam."), the form
        logs, errors and JMAP's smtpReply (RFC 8621 7) all want."""
        prefix = f"{self.code} {self.enhanced} " if self.enhanced else f"{self.code} "
        words = " ".join(line.strip() for line in self.text.split("\n") if line.strip())
        return (prefix + words).rstrip(" ")
