"""Email/query and Email/queryChanges against ground truth the test computes itself from the
seeded messages (stdlib parsing, the flags and folders the test chose), on Dovecot and Cyrus."""

from __future__ import annotations

import imaplib
import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from tests.mailcorpus import CORPUS, INTERNALDATES, THREADS
from tests.mailtruth import expected
from tests.translators.upstreams import Upstream, imap, ok, uid_of, upstream

__all__ = ["imap", "upstream"]  # fixtures

# key -> (folder, flags): what the test seeds and so knows.
SEED = {
    "plain_7bit": ("INBOX", "\\Seen"),
    "alternative": ("INBOX", "\\Flagged"),
    "mixed_attachments": ("Work", "\\Seen work"),
    "latin1": ("INBOX", ""),
    "koi8r": ("Work", ""),
    "conv_plans_1": ("INBOX", "\\Seen"),
    "conv_plans_2": ("Work", ""),
    "conv_plans_3": ("INBOX", "\\Flagged"),
    "lunch": ("INBOX", ""),
    "plans_unrelated": ("INBOX", "\\Seen"),
}


def received(key: str) -> datetime:
    return datetime.strptime(INTERNALDATES[key], "%d-%b-%Y %H:%M:%S %z").astimezone(UTC)


def subject(key: str) -> str:
    return str(message_from_bytes(CORPUS[key], policy=policy.default)["subject"] or "")


@pytest.fixture
async def seeded(upstream: Upstream, imap: imaplib.IMAP4) -> dict[str, Any]:
    """Seed SEED and return the gateway's ids and folder ids by name."""
    imap.create("Work")
    for key, (folder, flags) in SEED.items():
        ok(imap.append(folder, f"({flags})", f'"{INTERNALDATES[key]}"', CORPUS[key]))
    listed = await upstream.jmap.call(
        "Email/get", ids=None, properties=["header:X-Corpus-Key:asText", "threadId"]
    )
    ids = {e["header:X-Corpus-Key:asText"].strip(): e["id"] for e in listed["list"]}
    threads = {e["header:X-Corpus-Key:asText"].strip(): e["threadId"] for e in listed["list"]}
    mailboxes = await upstream.jmap.mailboxes()
    folders = {
        ("INBOX" if m["role"] == "inbox" else path): m["id"] for path, m in mailboxes.items()
    }
    return {"ids": ids, "folders": folders, "threads": threads}


async def query(upstream: Upstream, **args: Any) -> dict[str, Any]:
    return await upstream.jmap.call("Email/query", **args)


def newest_first(keys: list[str]) -> list[str]:
    return sorted(keys, key=received, reverse=True)


async def test_a_folder_newest_first_with_windows_and_totals(
    upstream: Upstream, seeded: dict[str, Any]
) -> None:
    ids, folders = seeded["ids"], seeded["folders"]
    inbox = newest_first([k for k, (f, _) in SEED.items() if f == "INBOX"])
    expected = [ids[k] for k in inbox]
    result = await query(upstream, filter={"inMailbox": folders["INBOX"]}, calculateTotal=True)
    assert result["ids"] == expected and result["total"] == len(expected)
    assert result["position"] == 0 and result["canCalculateChanges"] is True
    page = await query(upstream, filter={"inMailbox": folders["INBOX"]}, position=2, limit=3)
    assert page["ids"] == expected[2:5] and page["position"] == 2
    tail = await query(upstream, filter={"inMailbox": folders["INBOX"]}, position=-2)
    assert tail["ids"] == expected[-2:] and tail["position"] == len(expected) - 2
    anchored = await query(
        upstream,
        filter={"inMailbox": folders["INBOX"]},
        anchor=expected[3],
        anchorOffset=-1,
        limit=2,
    )
    assert anchored["ids"] == expected[2:4] and anchored["position"] == 2
    oldest = await query(
        upstream,
        filter={"inMailbox": folders["INBOX"]},
        sort=[{"property": "receivedAt", "isAscending": True}],
    )
    assert oldest["ids"] == expected[::-1]
    everything = await query(upstream)
    assert everything["ids"] == [ids[k] for k in newest_first(list(SEED))]
    missing = await upstream.jmap.request(
        ("Email/query", {"filter": {"inMailbox": folders["INBOX"]}, "anchor": "nothere"})
    )
    assert missing[0][1]["type"] == "anchorNotFound"


async def test_index_conditions_and_operators(upstream: Upstream, seeded: dict[str, Any]) -> None:
    ids, folders = seeded["ids"], seeded["folders"]

    def expect(predicate: Any) -> set[str]:
        return {ids[k] for k, (folder, flags) in SEED.items() if predicate(k, folder, flags)}

    cutoff = sorted(received(k) for k in SEED)[4]
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"hasKeyword": "$seen"}, expect(lambda k, f, fl: "\\Seen" in fl)),
        ({"notKeyword": "$seen"}, expect(lambda k, f, fl: "\\Seen" not in fl)),
        ({"hasKeyword": "work"}, expect(lambda k, f, fl: "work" in fl)),
        (
            {"inMailboxOtherThan": [folders["INBOX"]]},
            expect(lambda k, f, fl: f != "INBOX"),
        ),
        (
            {"after": cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")},
            expect(lambda k, f, fl: received(k) >= cutoff),
        ),
        (
            {"before": cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")},
            expect(lambda k, f, fl: received(k) < cutoff),
        ),
        (
            {
                "operator": "AND",
                "conditions": [
                    {"inMailbox": folders["INBOX"]},
                    {"operator": "NOT", "conditions": [{"hasKeyword": "$flagged"}]},
                ],
            },
            expect(lambda k, f, fl: f == "INBOX" and "\\Flagged" not in fl),
        ),
        (
            {
                "operator": "OR",
                "conditions": [{"hasKeyword": "$flagged"}, {"inMailbox": folders["Work"]}],
            },
            expect(lambda k, f, fl: "\\Flagged" in fl or f == "Work"),
        ),
    ]
    for condition, wanted in cases:
        result = await query(upstream, filter=condition)
        assert set(result["ids"]) == wanted, condition
    sizes = await upstream.jmap.call("Email/get", ids=list(ids.values()), properties=["size"])
    by_size = {e["id"]: e["size"] for e in sizes["list"]}
    middle = sorted(by_size.values())[5]
    small = await query(upstream, filter={"maxSize": middle})
    assert set(small["ids"]) == {i for i, s in by_size.items() if s < middle}
    large = await query(
        upstream,
        filter={"minSize": middle},
        sort=[{"property": "size", "isAscending": False}],
    )
    assert [by_size[i] for i in large["ids"]] == sorted(
        (s for s in by_size.values() if s >= middle), reverse=True
    )


async def test_thread_keyword_conditions_and_collapsed_threads(
    upstream: Upstream, seeded: dict[str, Any]
) -> None:
    ids, threads = seeded["ids"], seeded["threads"]
    conversation = [k for k in THREADS[0] if k in SEED]
    flagged_thread = {ids[k] for k in conversation}  # conv_plans_3 is flagged
    some = await query(upstream, filter={"someInThreadHaveKeyword": "$flagged"})
    assert set(some["ids"]) == flagged_thread | {ids["alternative"]}
    none = await query(upstream, filter={"noneInThreadHaveKeyword": "$flagged"})
    assert set(none["ids"]) == set(ids.values()) - set(some["ids"])
    every = await query(upstream, filter={"allInThreadHaveKeyword": "$seen"})
    lone_seen = {ids[k] for k, (_, fl) in SEED.items() if "\\Seen" in fl and k not in conversation}
    assert set(every["ids"]) == lone_seen
    collapsed = await query(upstream, collapseThreads=True, calculateTotal=True)
    assert collapsed["total"] == len(set(threads.values()))
    newest_of_conversation = newest_first(conversation)[0]
    assert ids[newest_of_conversation] in collapsed["ids"]
    assert not (
        set(collapsed["ids"]) & {ids[k] for k in conversation[1:] if k != newest_of_conversation}
    )


async def test_text_conditions_go_to_the_upstream(
    upstream: Upstream, seeded: dict[str, Any]
) -> None:
    ids, folders = seeded["ids"], seeded["folders"]
    with_plans = {ids[k] for k in SEED if "plans" in subject(k).lower()}
    result = await query(upstream, filter={"subject": "Plans"})
    assert set(result["ids"]) == with_plans
    in_inbox = await query(upstream, filter={"inMailbox": folders["INBOX"], "subject": "Plans"})
    assert set(in_inbox["ids"]) == {
        ids[k] for k in SEED if ids[k] in with_plans and SEED[k][0] == "INBOX"
    }
    header = await query(upstream, filter={"header": ["X-Corpus-Key", "lunch"]})
    assert header["ids"] == [ids["lunch"]]
    negated = await query(
        upstream, filter={"operator": "NOT", "conditions": [{"subject": "Plans"}]}
    )
    assert set(negated["ids"]) == set(ids.values()) - with_plans


async def test_sorts_by_header_properties(upstream: Upstream, seeded: dict[str, Any]) -> None:
    ids = seeded["ids"]
    result = await query(
        upstream,
        sort=[{"property": "sentAt", "isAscending": True}, {"property": "receivedAt"}],
    )

    def sent(key: str) -> tuple[bool, float]:
        value = message_from_bytes(CORPUS[key], policy=policy.default)["date"]
        return (value is not None, parsedate_to_datetime(str(value)).timestamp() if value else 0)

    assert result["ids"] == [ids[k] for k in sorted(SEED, key=lambda k: (sent(k), received(k)))]
    by_subject = await query(upstream, sort=[{"property": "subject"}])

    # RFC 5256 2.1 base subject, written here from the RFC: reply/forward prefixes and
    # [blobs] off the front, "(fwd)" off the end, white space collapsed; then compared
    # case-insensitively (i;unicode-casemap), equal ones by id.
    def base(key: str) -> str:
        value = " ".join(subject(key).split())
        while True:
            stripped = re.sub(
                r"^(?:(?:re|fwd?|fw)\s*(?:\[[^]]*\])?\s*:|\[[^]]*\])\s*", "", value, flags=re.I
            )
            stripped = re.sub(r"\s*\(fwd\)$", "", stripped, flags=re.I)
            if stripped == value:
                return value.casefold()
            value = stripped

    assert by_subject["ids"] == [ids[k] for k in sorted(SEED, key=lambda k: (base(k), ids[k]))]
    by_from = await query(upstream, sort=[{"property": "from", "isAscending": False}])

    def sender(key: str) -> str:
        header = message_from_bytes(CORPUS[key], policy=policy.default)["from"]
        first = header.addresses[0] if header is not None and header.addresses else None
        name = (first.display_name or first.addr_spec) if first is not None else ""
        return name.casefold()

    assert by_from["ids"] == [
        ids[k] for k in sorted(SEED, key=lambda k: (sender(k), ids[k]), reverse=True)
    ]
    bad = await upstream.jmap.request(("Email/query", {"sort": [{"property": "nothing"}]}))
    assert bad[0][1]["type"] == "unsupportedSort"
    unknown = await upstream.jmap.request(("Email/query", {"filter": {"isFlagged": True}}))
    assert unknown[0][1]["type"] == "unsupportedFilter"


async def test_has_attachment_from_the_structure(
    upstream: Upstream, seeded: dict[str, Any]
) -> None:
    ids = seeded["ids"]
    truth = {k: expected(CORPUS[k]) for k in SEED}
    certain = {k for k, t in truth.items() if "hasAttachment" not in t["uncertain"]}
    with_attachment = await query(upstream, filter={"hasAttachment": True})
    without = await query(upstream, filter={"hasAttachment": False})
    assert {k for k in certain if ids[k] in with_attachment["ids"]} == {
        k for k in certain if truth[k]["hasAttachment"]
    }
    assert set(with_attachment["ids"]) | set(without["ids"]) == set(ids.values())
    assert not set(with_attachment["ids"]) & set(without["ids"])
    # Answered from BODYSTRUCTURE before any structure was cached, and from the cache after:
    # the same answer.
    await upstream.jmap.call("Email/get", ids=list(ids.values()), properties=["hasAttachment"])
    again = await query(upstream, filter={"hasAttachment": True})
    assert again["ids"] == with_attachment["ids"]


async def test_query_changes_after_imap_changes(
    upstream: Upstream, imap: imaplib.IMAP4, seeded: dict[str, Any]
) -> None:
    ids, folders = seeded["ids"], seeded["folders"]
    args: dict[str, Any] = {"filter": {"inMailbox": folders["INBOX"]}}
    before = await query(upstream, **args)
    # Read one, move one out, and new mail.
    ok(imap.select("INBOX"))
    ok(imap.uid("STORE", uid_of(imap, "INBOX", "latin1"), "+FLAGS", "(\\Seen)"))
    ok(imap.uid("MOVE", uid_of(imap, "INBOX", "lunch"), "Work"))
    ok(imap.append("INBOX", "()", f'"{INTERNALDATES["cp1252"]}"', CORPUS["cp1252"]))
    after = await query(upstream, **args)
    changes = await upstream.jmap.call(
        "Email/queryChanges", sinceQueryState=before["queryState"], calculateTotal=True, **args
    )
    assert changes["newQueryState"] == after["queryState"]
    assert changes["total"] == len(after["ids"])
    # Applying the changes to the old list gives the new one (RFC 8620 5.6).
    rebuilt = [i for i in before["ids"] if i not in set(changes["removed"])]
    for item in changes["added"]:
        rebuilt.insert(item["index"], item["id"])
    assert rebuilt == after["ids"]
    assert ids["lunch"] in changes["removed"] and ids["lunch"] not in after["ids"]


async def test_search_snippets_mark_subject_and_body(
    upstream: Upstream, seeded: dict[str, Any]
) -> None:
    ids = seeded["ids"]
    found = await query(upstream, filter={"text": "Plans"})
    wanted = [ids["conv_plans_1"], ids["plain_7bit"], "nothere"]
    snippets = await upstream.jmap.call(
        "SearchSnippet/get", filter={"text": "Plans"}, emailIds=wanted
    )
    by_id = {s["emailId"]: s for s in snippets["list"]}
    assert snippets["notFound"] == ["nothere"]
    plans = by_id[ids["conv_plans_1"]]
    assert ids["conv_plans_1"] in found["ids"]
    assert plans["subject"] is not None and "<mark>Plans</mark>" in plans["subject"]
    assert plans["preview"] is None or "<mark>" in plans["preview"]
    other = by_id[ids["plain_7bit"]]
    assert other["subject"] is None
    too_many = await upstream.jmap.request(
        ("SearchSnippet/get", {"filter": None, "emailIds": ["x"] * 1001})
    )
    assert too_many[0][1]["type"] == "requestTooLarge"


async def test_query_changes_limits_and_unknown_states(
    upstream: Upstream, imap: imaplib.IMAP4, seeded: dict[str, Any]
) -> None:
    folders = seeded["folders"]
    args: dict[str, Any] = {"filter": {"inMailbox": folders["INBOX"]}, "collapseThreads": True}
    before = await query(upstream, **args)
    ok(imap.select("INBOX"))
    ok(imap.store("1:*", "+FLAGS", "(\\Answered)"))
    many = await upstream.jmap.request(
        ("Email/queryChanges", {"sinceQueryState": before["queryState"], "maxChanges": 1, **args})
    )
    assert many[0][1]["type"] == "tooManyChanges"
    changes = await upstream.jmap.call(
        "Email/queryChanges", sinceQueryState=before["queryState"], **args
    )
    after = await query(upstream, **args)
    rebuilt = [i for i in before["ids"] if i not in set(changes["removed"])]
    for item in changes["added"]:
        rebuilt.insert(item["index"], item["id"])
    assert rebuilt == after["ids"]
    stale = await upstream.jmap.request(
        ("Email/queryChanges", {"sinceQueryState": "nonsense", **args})
    )
    assert stale[0][1]["type"] == "cannotCalculateChanges"


async def test_edge_requests_get_answers_not_errors(
    upstream: Upstream, seeded: dict[str, Any]
) -> None:
    folders, ids = seeded["folders"], seeded["ids"]
    empty_sort = await query(upstream, filter={"inMailbox": folders["INBOX"]}, sort=[])
    newest = await query(upstream, filter={"inMailbox": folders["INBOX"]})
    assert empty_sort["ids"] == newest["ids"]
    for bad in ("2024-02-30T00:00:00Z", "2024-01-01T24:00:00Z", "yesterday"):
        answer = await upstream.jmap.request(("Email/query", {"filter": {"before": bad}}))
        assert answer[0][1]["type"] == "invalidArguments", bad
    everything = await query(upstream, filter={})
    assert set(everything["ids"]) == set(ids.values())
