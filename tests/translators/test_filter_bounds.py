"""Filters cost the upstream one UID SEARCH per folder for each part made only of text
conditions, however many conditions it holds, and filters, sorts and property lists past
their documented bounds are refused before any upstream work.

The hostile review's filter of 1,000 text conditions sent 9,000 UID SEARCH commands (one per
condition per folder). The tests count the commands the gateway sends (its debug log names
each one), and check the results against what the test seeded.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import pytest

from gateway.jmap.standard import (
    MAX_FILTER_CONDITIONS,
    MAX_FILTER_DEPTH,
    MAX_PROPERTIES,
    MAX_SORT_COMPARATORS,
)
from gateway.translators.email.filtering import MAX_SEARCH_TERMS, MAX_SEARCH_TEXT
from tests.cyrus import Cyrus
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import ok
from tests.translators.upstreams import Upstream, upstream
from tests.upstream_log import upstream_commands

__all__ = ["upstream"]  # fixture

# key -> (folder, from, subject, body, flags)
SEED = {
    "a": ("INBOX", "ann", "alpha plans", "nothing here", ""),
    "b": ("INBOX", "bob", "other", "beta text", "\\Flagged"),
    "c": ("Work", "carol", "alpha report", "gamma numbers", "\\Flagged"),
    "d": ("Work", "dave", "weekly", "beta and gamma", ""),
    "e": ("Lists", "ann", "digest", "nothing", ""),
}
FOLDERS_WITH_MAIL = 3


def message(key: str, sender: str, subject: str, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"{sender} <{sender}@example.org>"
    msg["To"] = "me@example.org"
    msg["Subject"] = subject
    msg["X-Key"] = key
    msg.set_content(body)
    return msg.as_bytes(policy=SMTP)


async def seed(server: Dovecot | Cyrus, jmap: Jmap) -> dict[str, str]:
    imap = server.client(jmap.username)
    for folder in ("Work", "Lists"):
        ok(imap.create(folder))
    for key, (folder, sender, subject, body, flags) in SEED.items():
        ok(imap.append(folder, f"({flags})", None, message(key, sender, subject, body)))
    imap.logout()
    listed = await jmap.call("Email/get", ids=None, properties=["header:X-Key:asText"])
    return {e["header:X-Key:asText"].strip(): e["id"] for e in listed["list"]}


@pytest.fixture
async def ids(dovecot: Dovecot, jmap: Jmap) -> dict[str, str]:
    return await seed(dovecot, jmap)


def searches(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The UID SEARCH commands sent since the last call."""
    return [command for command in upstream_commands(caplog) if command.startswith("UID SEARCH")]


def expected(ids: dict[str, str], keys: str) -> set[str]:
    return {ids[key] for key in keys}


@pytest.mark.parametrize(
    ("filter_", "keys", "per_folder"),
    [
        ({"subject": "alpha"}, "ac", 1),
        ({"text": "beta gamma"}, "d", 1),
        ({"subject": "alpha", "body": "gamma"}, "c", 1),
        (
            {
                "operator": "OR",
                "conditions": [{"subject": "alpha"}, {"body": "beta"}, {"from": "dave"}],
            },
            "abcd",
            1,
        ),
        ({"operator": "NOT", "conditions": [{"subject": "alpha"}, {"body": "beta"}]}, "e", 1),
        (
            {
                "operator": "AND",
                "conditions": [
                    {"operator": "OR", "conditions": [{"body": "gamma"}, {"from": "ann"}]},
                    {"operator": "NOT", "conditions": [{"subject": "digest"}]},
                ],
            },
            "acd",
            1,
        ),
        (
            {
                "operator": "OR",
                "conditions": [
                    {
                        "operator": "AND",
                        "conditions": [{"subject": "alpha"}, {"hasKeyword": "$flagged"}],
                    },
                    {"body": "nothing"},
                ],
            },
            "ace",
            2,
        ),
    ],
    ids=["one", "words", "two-properties", "or", "not", "nested", "mixed"],
)
async def test_text_conditions_share_one_search_per_folder(
    upstream: Upstream,
    caplog: pytest.LogCaptureFixture,
    filter_: dict[str, Any],
    keys: str,
    per_folder: int,
) -> None:
    """On Dovecot and Cyrus alike: both take OR, NOT and parenthesized keys."""
    ids = await seed(upstream.server, upstream.jmap)
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    searches(caplog)
    found = await upstream.jmap.call("Email/query", filter=filter_)
    assert set(found["ids"]) == expected(ids, keys)
    assert len(searches(caplog)) == per_folder * FOLDERS_WITH_MAIL


async def test_the_reviews_thousand_conditions_send_nothing_upstream(
    jmap: Jmap, ids: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    searches(caplog)
    conditions = [{"subject": f"word{n}"} for n in range(1_000)]
    answer = await jmap.request(
        ("Email/query", {"filter": {"operator": "OR", "conditions": conditions}})
    )
    assert answer[0][1]["type"] == "unsupportedFilter"
    assert searches(caplog) == []


async def test_the_most_text_conditions_cost_one_search_per_folder(
    jmap: Jmap, ids: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    searches(caplog)
    conditions = [{"subject": f"word{n}"} for n in range(MAX_SEARCH_TERMS - 1)]
    conditions.append({"subject": "alpha"})
    found = await jmap.call("Email/query", filter={"operator": "OR", "conditions": conditions})
    assert set(found["ids"]) == expected(ids, "ac")
    assert len(searches(caplog)) == FOLDERS_WITH_MAIL


def nested(depth: int) -> dict[str, Any]:
    tree: dict[str, Any] = {"subject": "alpha"}
    for _ in range(depth):
        tree = {"operator": "AND", "conditions": [tree]}
    return tree


@pytest.mark.parametrize(
    ("method", "args", "error"),
    [
        ("Email/query", {"filter": nested(MAX_FILTER_DEPTH + 1)}, "unsupportedFilter"),
        ("Mailbox/query", {"filter": nested(MAX_FILTER_DEPTH + 1)}, "unsupportedFilter"),
        (
            "Email/query",
            {
                "filter": {
                    "operator": "OR",
                    "conditions": [{"minSize": n} for n in range(MAX_FILTER_CONDITIONS)],
                }
            },
            "unsupportedFilter",
        ),
        (
            "Mailbox/query",
            {
                "filter": {
                    "operator": "OR",
                    "conditions": [{"name": str(n)} for n in range(MAX_FILTER_CONDITIONS)],
                }
            },
            "unsupportedFilter",
        ),
        (
            "Email/query",
            {"filter": {"text": " ".join(["w"] * (MAX_SEARCH_TERMS + 1))}},
            "unsupportedFilter",
        ),
        ("Email/query", {"filter": {"subject": "x" * (MAX_SEARCH_TEXT + 1)}}, "unsupportedFilter"),
        (
            "SearchSnippet/get",
            {"filter": {"text": " ".join(str(n) for n in range(100_000))}, "emailIds": []},
            "unsupportedFilter",
        ),
        (
            "Email/query",
            {"sort": [{"property": "size"}] * (MAX_SORT_COMPARATORS + 1)},
            "unsupportedSort",
        ),
        (
            "Mailbox/query",
            {"sort": [{"property": "name"}] * (MAX_SORT_COMPARATORS + 1)},
            "unsupportedSort",
        ),
        (
            "Email/get",
            {"ids": [], "properties": [f"header:X-{n}" for n in range(MAX_PROPERTIES + 1)]},
            "invalidArguments",
        ),
        (
            "Email/get",
            {"ids": [], "bodyProperties": [f"header:X-{n}" for n in range(MAX_PROPERTIES + 1)]},
            "invalidArguments",
        ),
    ],
    ids=[
        "email-depth",
        "mailbox-depth",
        "email-conditions",
        "mailbox-conditions",
        "words",
        "long-text",
        "snippet-terms",
        "email-sort",
        "mailbox-sort",
        "properties",
        "body-properties",
    ],
)
async def test_past_a_bound_is_the_rfcs_error_before_any_search(
    jmap: Jmap,
    caplog: pytest.LogCaptureFixture,
    method: str,
    args: dict[str, Any],
    error: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    ((name, answer, _),) = await jmap.request((method, args))
    assert (name, answer["type"]) == ("error", error)
    assert searches(caplog) == []


async def test_at_the_bounds_filters_and_sorts_are_served(jmap: Jmap, ids: dict[str, str]) -> None:
    deepest = await jmap.call("Email/query", filter=nested(MAX_FILTER_DEPTH))
    assert set(deepest["ids"]) == expected(ids, "ac")
    sort = [{"property": "size"}] * (MAX_SORT_COMPARATORS - 1) + [{"property": "receivedAt"}]
    assert len((await jmap.call("Email/query", sort=sort))["ids"]) == len(SEED)
    repeated = ["subject"] * 10_000
    got = await jmap.call("Email/get", ids=[ids["a"]], properties=repeated)
    assert got["list"] == [{"id": ids["a"], "subject": "alpha plans"}]
    threads = await jmap.call("Thread/get", ids=None, properties=["emailIds"] * 10_000)
    assert all(set(thread) == {"id", "emailIds"} for thread in threads["list"])
