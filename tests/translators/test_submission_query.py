"""EmailSubmission/query and /queryChanges through a gateway (RFC 8621 7.3, 7.4), against
lists computed here from the records put in the store."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from gateway.cache.submissions import SubmissionRecord
from gateway.translators.submission.query import INLINE_RECORDS
from tests.translators.submissions import (
    BASE,
    Sender,
    assorted,
    redis_client,
    sender,
    submission,
    submission_gateway,
    submission_http,
    utc,
)

__all__ = ["redis_client", "sender", "submission_gateway", "submission_http"]


def sent(record: SubmissionRecord) -> datetime:
    return datetime.strptime(record.send_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=BASE.tzinfo)


# How this test reads each sort property of a record (sentAt is the RFC's name for sendAt).
SORT_VALUES: dict[str, Callable[[SubmissionRecord], Any]] = {
    "emailId": lambda r: r.email_id,
    "threadId": lambda r: r.thread_id,
    "sentAt": sent,
    "sendAt": sent,
}


def ordered(records: list[SubmissionRecord], sort: list[dict[str, Any]]) -> list[str]:
    """The records in the sort's order, ties in id order."""

    def compare(a: SubmissionRecord, b: SubmissionRecord) -> int:
        for comparator in sort:
            read = SORT_VALUES[comparator["property"]]
            left, right = read(a), read(b)
            if left != right:
                sign = 1 if comparator.get("isAscending", True) else -1
                return sign * (1 if left > right else -1)
        return (a.id > b.id) - (a.id < b.id)

    return [r.id for r in sorted(records, key=functools.cmp_to_key(compare))]


BY_DATE = [{"property": "sentAt"}]
MOMENT = BASE + timedelta(minutes=3)
# Each FilterCondition of RFC 8621 7.3 and an operator or two, with what it means.
FILTERS: list[tuple[dict[str, Any], Callable[[SubmissionRecord], bool]]] = [
    ({}, lambda r: True),
    ({"identityIds": ["I1", "I3"]}, lambda r: r.identity_id in ("I1", "I3")),
    ({"emailIds": ["Mb"]}, lambda r: r.email_id == "Mb"),
    ({"emailIds": []}, lambda r: False),
    ({"threadIds": ["Ta", "Tc"]}, lambda r: r.thread_id in ("Ta", "Tc")),
    ({"undoStatus": "pending"}, lambda r: r.undo_status == "pending"),
    ({"undoStatus": "canceled"}, lambda r: r.undo_status == "canceled"),
    ({"undoStatus": "unheard-of"}, lambda r: False),
    ({"before": utc(MOMENT)}, lambda r: sent(r) < MOMENT),
    ({"after": utc(MOMENT)}, lambda r: sent(r) >= MOMENT),
    (
        {"after": utc(BASE + timedelta(minutes=1)), "before": utc(MOMENT), "emailIds": ["Ma"]},
        lambda r: BASE + timedelta(minutes=1) <= sent(r) < MOMENT and r.email_id == "Ma",
    ),
    (
        {"operator": "OR", "conditions": [{"undoStatus": "final"}, {"threadIds": ["Tb"]}]},
        lambda r: r.undo_status == "final" or r.thread_id == "Tb",
    ),
    (
        {
            "operator": "AND",
            "conditions": [
                {"identityIds": ["I2"]},
                {
                    "operator": "NOT",
                    "conditions": [{"undoStatus": "pending"}, {"emailIds": ["Md"]}],
                },
            ],
        },
        lambda r: r.identity_id == "I2" and r.undo_status != "pending" and r.email_id != "Md",
    ),
]


@pytest.fixture
async def records(sender: Sender) -> list[SubmissionRecord]:
    made = assorted(40, seed=14)
    for each in made:
        await sender.store.create(each)
    return made


@pytest.mark.parametrize(("query_filter", "wanted"), FILTERS)
async def test_each_filter(
    sender: Sender,
    records: list[SubmissionRecord],
    query_filter: dict[str, Any],
    wanted: Callable[[SubmissionRecord], bool],
) -> None:
    expected = ordered([r for r in records if wanted(r)], BY_DATE)
    answer = await sender.call(
        "EmailSubmission/query", filter=query_filter, sort=BY_DATE, calculateTotal=True
    )
    assert answer["ids"] == expected
    assert answer["total"] == len(expected)
    assert answer["queryState"] == await sender.store.state()
    assert answer["canCalculateChanges"] is True


@pytest.mark.parametrize(
    "sort",
    [
        [{"property": "emailId"}],
        [{"property": "emailId", "isAscending": False}],
        [{"property": "threadId"}, {"property": "sentAt", "isAscending": False}],
        [{"property": "sendAt"}, {"property": "emailId", "collation": "i;octet"}],
        [{"property": "sentAt", "isAscending": False}, {"property": "threadId"}],
    ],
)
async def test_each_sort(
    sender: Sender, records: list[SubmissionRecord], sort: list[dict[str, Any]]
) -> None:
    answer = await sender.call("EmailSubmission/query", sort=sort)
    assert answer["ids"] == ordered(records, sort)


async def test_windows(sender: Sender, records: list[SubmissionRecord]) -> None:
    full = ordered(records, BY_DATE)
    answer = await sender.call("EmailSubmission/query", sort=BY_DATE, position=5, limit=7)
    assert (answer["ids"], answer["position"]) == (full[5:12], 5)
    tail = await sender.call("EmailSubmission/query", sort=BY_DATE, position=-3)
    assert (tail["ids"], tail["position"]) == (full[-3:], len(full) - 3)
    anchored = await sender.call(
        "EmailSubmission/query", sort=BY_DATE, anchor=full[10], anchorOffset=-2, limit=4
    )
    assert (anchored["ids"], anchored["position"]) == (full[8:12], 8)
    beyond = await sender.call("EmailSubmission/query", sort=BY_DATE, position=100)
    assert beyond["ids"] == []
    missing = await sender.error("EmailSubmission/query", anchor="Snothing")
    assert missing["type"] == "anchorNotFound"


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"filter": {"subject": "x"}}, "unsupportedFilter"),
        ({"filter": {"before": "yesterday"}}, "invalidArguments"),
        ({"filter": {"identityIds": "I1"}}, "invalidArguments"),
        ({"filter": {"undoStatus": 1}}, "invalidArguments"),
        ({"sort": [{"property": "size"}]}, "unsupportedSort"),
        ({"sort": [{"property": "emailId", "collation": "i;nonesuch"}]}, "unsupportedSort"),
        ({"limit": -1}, "invalidArguments"),
    ],
)
async def test_bad_queries(sender: Sender, arguments: dict[str, Any], error: str) -> None:
    assert (await sender.error("EmailSubmission/query", **arguments))["type"] == error


def applied(old: list[str], changes: dict[str, Any]) -> list[str]:
    """RFC 8620 5.6: the old results without ``removed``, then ``added`` spliced in."""
    removed = set(changes["removed"])
    current = [i for i in old if i not in removed]
    for item in changes["added"]:
        current.insert(item["index"], item["id"])
    return current


QUERIES: list[dict[str, Any]] = [
    {"sort": BY_DATE},
    {"filter": {"undoStatus": "pending"}, "sort": [{"property": "emailId"}]},
    {"filter": {"threadIds": ["Ta", "Tb"]}, "sort": [{"property": "sentAt", "isAscending": False}]},
]


@pytest.mark.parametrize("query", QUERIES)
async def test_query_changes_after_a_cancel_a_destroy_and_a_send(
    sender: Sender, records: list[SubmissionRecord], query: dict[str, Any]
) -> None:
    before = await sender.call("EmailSubmission/query", **query)
    pending = [r for r in records if r.undo_status == "pending"]
    done = [r for r in records if r.undo_status != "pending"]
    canceled = replace(pending[0], undo_status="canceled", finished_at=time.time())
    assert await sender.store.replace(canceled, expect="pending")
    assert await sender.store.destroy([pending[1].id, done[0].id]) == [pending[1].id, done[0].id]
    await sender.store.create(submission("Snew", undo_status="pending", thread_id="Ta"))
    after = await sender.call("EmailSubmission/query", **query)
    changes = await sender.call(
        "EmailSubmission/queryChanges",
        sinceQueryState=before["queryState"],
        calculateTotal=True,
        **query,
    )
    assert changes["oldQueryState"] == before["queryState"]
    assert changes["newQueryState"] == after["queryState"]
    assert applied(before["ids"], changes) == after["ids"]
    assert changes["total"] == len(after["ids"])
    assert {pending[1].id, done[0].id} <= set(changes["removed"])


async def test_query_changes_up_to_an_id_and_bounds(
    sender: Sender, records: list[SubmissionRecord]
) -> None:
    query: dict[str, Any] = {"sort": BY_DATE}
    before = await sender.call("EmailSubmission/query", **query)
    await sender.store.create(submission("Searly", send_at=BASE - timedelta(days=1)))
    await sender.store.create(submission("Slate", send_at=BASE + timedelta(days=1)))
    after = await sender.call("EmailSubmission/query", **query)
    assert after["ids"][0] == "Searly" and after["ids"][-1] == "Slate"
    # Filter and sort read immutable properties alone: upToId leaves out what follows it.
    cut = await sender.call(
        "EmailSubmission/queryChanges",
        sinceQueryState=before["queryState"],
        upToId=after["ids"][5],
        **query,
    )
    assert cut["added"] == [{"id": "Searly", "index": 0}]
    assert "Slate" not in cut["removed"]
    too_many = await sender.error(
        "EmailSubmission/queryChanges", sinceQueryState=before["queryState"], maxChanges=1, **query
    )
    assert too_many["type"] == "tooManyChanges"
    stale = await sender.error("EmailSubmission/queryChanges", sinceQueryState="x-1", **query)
    assert stale["type"] == "cannotCalculateChanges"


async def test_many_submissions_query_beside_the_loop(sender: Sender) -> None:
    """Past INLINE_RECORDS (and past the offload's inline octets) the records are decoded and
    the query run in the CPU pool: the same answer."""
    made = assorted(INLINE_RECORDS + 100, seed=7)
    for each in made:
        await sender.store.create(each)
    sort = [{"property": "threadId", "isAscending": False}, {"property": "sentAt"}]
    answer = await sender.call(
        "EmailSubmission/query", filter={"undoStatus": "final"}, sort=sort, calculateTotal=True
    )
    assert answer["ids"] == ordered([r for r in made if r.undo_status == "final"], sort)
    assert 0 < answer["total"] < len(made)
    # More than maxObjectsInGet (500 by default): all of them at once is too many.
    too_many = await sender.error("EmailSubmission/get", ids=None)
    assert too_many["type"] == "requestTooLarge"
    some = await sender.call("EmailSubmission/get", ids=answer["ids"][:3], properties=["id"])
    assert some["list"] == [{"id": i} for i in answer["ids"][:3]]
