"""Search snippet text: words from the filter, marks, escaping and the 255-octet limit."""

from __future__ import annotations

from gateway.translators.email.filtering import parse_filter
from gateway.translators.email.snippet import excerpt, highlight, words


def test_words_come_from_positive_text_conditions_only() -> None:
    tree = parse_filter(
        {
            "operator": "AND",
            "conditions": [
                {"text": 'plans "next week"'},
                {"subject": "Lunch"},
                {"body": "budget"},
                {"operator": "NOT", "conditions": [{"text": "spam"}]},
                {"from": "alice"},
            ],
        }
    )
    subject, body = words(tree)
    assert subject == ["plans", "next week", "Lunch"]
    assert body == ["plans", "next week", "budget"]


def test_highlight_escapes_and_marks_case_insensitively() -> None:
    assert highlight("Re: <b>Plans</b> & plans", ["plans"]) == (
        "Re: &lt;b&gt;<mark>Plans</mark>&lt;/b&gt; &amp; <mark>plans</mark>"
    )
    assert highlight("Nothing here", ["plans"]) is None
    assert highlight("Anything", []) is None


def test_excerpt_is_around_the_first_match_and_at_most_255_octets() -> None:
    body = "intro " * 100 + "the budget for next week " + "tail " * 100
    snippet = excerpt(body, ["budget"])
    assert snippet is not None and "<mark>budget</mark>" in snippet
    assert len(snippet.encode()) <= 255
    assert snippet.startswith("intro")  # some context before the match, from a word start
    assert excerpt("no match at all", ["budget"]) is None
    wide = excerpt("ü" * 300 + " budget", ["budget"])
    assert wide is not None and len(wide.encode()) <= 255 and "<mark>budget</mark>" in wide


def test_text_is_split_into_words_and_quoted_phrases() -> None:
    from gateway.translators.email.filtering import Leaf, search_key, terms

    assert terms("plans \"next week\" 'it is' lunch") == ["plans", "next week", "it is", "lunch"]
    assert terms(r'"say \"hi\""') == ['say "hi"']
    assert search_key(Leaf("subject", "next plans")) == [
        ["SUBJECT", "next"],
        ["SUBJECT", "plans"],
    ]
    assert search_key(Leaf("header", ["List-Id"])) == [["HEADER", "List-Id", ""]]


def test_an_expensive_lead_gives_way_to_the_match() -> None:
    snippet = excerpt("&" * 39 + " needle " + "tail " * 60, ["needle"])
    assert snippet is not None and "<mark>needle</mark>" in snippet
    assert len(snippet.encode()) <= 255


def test_base_subject_follows_rfc5256() -> None:
    from gateway.translators.email.filtering import base_subject

    assert base_subject("Re: [PATCH] fix it") == "fix it"
    assert base_subject("[PATCH]") == "[PATCH]"
    assert base_subject("[Fwd: hello]") == "hello"
    assert base_subject("Fwd: Re: plans (fwd)") == "plans"
