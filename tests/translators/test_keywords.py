"""Keywords and flags (RFC 8621 4.1.1)."""

from __future__ import annotations

import pytest

from gateway.cache.emails import is_deleted
from gateway.translators.keywords import (
    flags_from_keywords,
    is_valid_keyword,
    keyword_of,
    keyword_set,
    keywords_from_flags,
)


def test_system_flags_become_dollar_keywords() -> None:
    flags = ["\\Seen", "\\FLAGGED", "\\answered", "\\Draft", "\\Recent", "$Forwarded", "Work"]
    assert keywords_from_flags(flags) == {
        "$seen": True,
        "$flagged": True,
        "$answered": True,
        "$draft": True,
        "$forwarded": True,
        "work": True,
    }


def test_deleted_is_not_a_keyword_but_hides_the_message() -> None:
    assert keywords_from_flags(["\\Deleted", "\\Seen"]) == {"$seen": True}
    assert is_deleted(["\\Seen", "\\DELETED"]) and not is_deleted(["\\Seen"])


def test_unknown_system_flags_and_bad_keywords_are_dropped() -> None:
    assert keywords_from_flags(["\\Important", "bad]word", "\\*"]) == {}


def test_keywords_to_flags() -> None:
    assert flags_from_keywords({"$seen": True, "$Flagged": True, "$forwarded": True}) == [
        "\\Seen",
        "\\Flagged",
        "$forwarded",
    ]


@pytest.mark.parametrize(
    ("keyword", "valid"),
    [
        ("$seen", True),
        ("work-2026", True),
        ("a" * 255, True),
        ("a" * 256, False),
        ("", False),
        ("with space", False),
        ("paren(", False),
        ("brace{", False),
        ("bracket]", False),
        ("percent%", False),
        ("star*", False),
        ('quote"', False),
        ("back\\slash", False),
        ("naïve", False),
        ("[ok", True),
    ],
)
def test_keyword_syntax(keyword: str, valid: bool) -> None:
    assert is_valid_keyword(keyword) is valid


def test_keyword_set_agrees_with_keywords_from_flags() -> None:
    flags = ["\\Seen", "\\Deleted", "\\Recent", "$Junk", "$JUNK", "bad]word", "\\Unknown", "x"]
    assert keyword_set(flags) == frozenset(keywords_from_flags(flags))
    assert keyword_set(flags) == {"$seen", "$junk", "x"}
    assert keyword_of("\\FLAGGED") == "$flagged" and keyword_of("\\Recent") is None
