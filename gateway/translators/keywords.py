"""JMAP keywords and IMAP flags, both ways (RFC 8621 4.1.1).

One table for the system flags; everything else is the same word, lower-cased on the way to
JMAP because JSON is case-sensitive and IMAP keywords are not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

# RFC 8621 4.1.1: the four IMAP system flags that become $-keywords.
SYSTEM_FLAGS = {
    "$seen": "\\Seen",
    "$flagged": "\\Flagged",
    "$answered": "\\Answered",
    "$draft": "\\Draft",
}
_FLAG_KEYWORDS = {flag.lower(): keyword for keyword, flag in SYSTEM_FLAGS.items()}
# RFC 8621 4.1.1: \Recent is not exposed; \Deleted messages are not visible at all.
DELETED = "\\deleted"
_NOT_KEYWORDS = frozenset({"\\recent", DELETED})
# RFC 8621 4.1.1: 1-255 of %x21-%x7e without ( ) { ] % * " \
_KEYWORD = re.compile(r"[!#$&\'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]{1,255}")
# Distinct flag spellings remembered by keyword_of: a mailbox uses a handful, so an Email/set
# of thousands or an Email/get of a page converts each spelling once; the bound keeps a
# folder of hostile flags from growing it.
_REMEMBERED_FLAGS = 4096


def is_valid_keyword(keyword: str) -> bool:
    return _KEYWORD.fullmatch(keyword) is not None


@lru_cache(maxsize=_REMEMBERED_FLAGS)
def keyword_of(flag: str) -> str | None:
    """The keyword an IMAP flag stands for, or None (\\Recent, \\Deleted, other system flags
    and words that are no valid keyword)."""
    lowered = flag.lower()
    if lowered in _NOT_KEYWORDS:
        return None
    if lowered in _FLAG_KEYWORDS:
        return _FLAG_KEYWORDS[lowered]
    if not flag.startswith("\\") and is_valid_keyword(flag):
        return lowered
    return None


def keyword_set(flags: Iterable[str]) -> frozenset[str]:
    """The keywords of a message with these IMAP flags, as a set."""
    return frozenset(keyword for flag in flags if (keyword := keyword_of(flag)) is not None)


def keywords_from_flags(flags: Iterable[str]) -> dict[str, bool]:
    """The ``keywords`` property of a message with these IMAP flags."""
    return {keyword: True for flag in flags if (keyword := keyword_of(flag)) is not None}


def flags_from_keywords(keywords: Mapping[str, bool] | Iterable[str]) -> list[str]:
    """IMAP flags for keywords (valid ones; the caller rejects invalid ones first)."""
    return [SYSTEM_FLAGS.get(keyword.lower(), keyword) for keyword in keywords]
