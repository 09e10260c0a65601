"""jmapc, the most used Python JMAP client, puts position, anchorOffset and calculateTotal into
every sort Comparator. The gateway ignores comparator members it does not know, on every sort
of Email/query and Mailbox/query alike, as Cyrus does (RFC 8620 5.5 lets a type add members).

The request below is what jmapc 0.4.0 sent for ``client.request([EmailQuery(sort=[...]),
...])`` (recorded from its HTTP session, account id and call ids aside). jmapc itself is not a
test dependency: it pins requests, sseclient and dataclasses-json, and only its wire format
matters here. Each answer must equal the answer to the same query without the extra members.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import Mail, message, ok

# What jmapc adds to each Comparator (jmapc/models/models.py, fields with defaults).
JMAPC_MEMBERS = {"anchorOffset": 0, "calculateTotal": False, "position": 0}

RECORDED: list[tuple[str, dict[str, Any]]] = [
    (
        "Email/query",
        {
            "sort": [
                {
                    "property": "receivedAt",
                    "isAscending": False,
                    "anchorOffset": 0,
                    "calculateTotal": False,
                    "position": 0,
                }
            ],
            "limit": 5,
        },
    ),
    (
        "Email/query",
        {
            "sort": [
                {
                    "property": "subject",
                    "isAscending": True,
                    "anchorOffset": 0,
                    "calculateTotal": False,
                    "position": 0,
                },
                {
                    "property": "size",
                    "isAscending": True,
                    "anchorOffset": 0,
                    "calculateTotal": False,
                    "position": 0,
                },
            ]
        },
    ),
    (
        "Mailbox/query",
        {
            "sort": [
                {
                    "property": "name",
                    "isAscending": True,
                    "anchorOffset": 0,
                    "calculateTotal": False,
                    "position": 0,
                }
            ],
            "sortAsTree": False,
            "filterAsTree": False,
        },
    ),
    (
        "Mailbox/query",
        {
            "sort": [
                {
                    "property": "sortOrder",
                    "isAscending": True,
                    "anchorOffset": 0,
                    "calculateTotal": False,
                    "position": 0,
                }
            ],
            "filter": {"name": "Inbox"},
            "sortAsTree": False,
            "filterAsTree": False,
        },
    ),
]


def without_jmapc_members(args: dict[str, Any]) -> dict[str, Any]:
    sort = [{k: v for k, v in c.items() if k not in JMAPC_MEMBERS} for c in args["sort"]]
    return {**args, "sort": sort}


@pytest.fixture
async def seeded(dovecot: Dovecot, jmap: Jmap) -> None:
    mail = Mail(dovecot, jmap.username)
    mail.create("Work", "Archive/2024")
    for key, subject in (("a", "zebra"), ("b", "apple"), ("c", "mango")):
        ok(mail.imap.append("INBOX", "", None, message(key, subject=subject)))
    mail.close()


async def test_jmapcs_sorted_queries_are_answered_as_without_its_members(
    jmap: Jmap, seeded: None
) -> None:
    answers = await jmap.request(*RECORDED)
    plain = await jmap.request(*((name, without_jmapc_members(a)) for name, a in RECORDED))
    assert [a[0] for a in answers] == [name for name, _ in RECORDED]
    assert [a[1]["ids"] for a in answers] == [a[1]["ids"] for a in plain]
    assert len(answers[0][1]["ids"]) == 3
    by_subject = await jmap.call("Email/get", ids=answers[1][1]["ids"], properties=["subject"])
    assert [e["subject"] for e in by_subject["list"]] == ["apple", "mango", "zebra"]
    (inbox,) = answers[3][1]["ids"]
    assert (await jmap.mailboxes())["Inbox"]["id"] == inbox


async def test_keyword_sorts_still_need_their_keyword(jmap: Jmap, seeded: None) -> None:
    sort = [{"property": "hasKeyword", **JMAPC_MEMBERS}]
    ((_, error, _),) = await jmap.request(("Email/query", {"sort": sort}))
    assert error["type"] == "invalidArguments"
    sort[0]["keyword"] = "$seen"
    assert len((await jmap.call("Email/query", sort=sort))["ids"]) == 3
