"""EmailSubmission/query and EmailSubmission/queryChanges (RFC 8621 7.3, 7.4).

An account's submissions are few (the store bounds them) and all in Redis, so a query reads
them all, filters and sorts in memory. The query state is the EmailSubmission state:
queryChanges reports every submission changed since as removed and those of them in the
results now as added at their index (RFC 8620 5.6 allows it when old results are not kept).
Every property a filter or sort reads is immutable but undoStatus, so without an undoStatus
condition ``upToId`` applies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.cache.changes import CannotCalculateChanges
from gateway.cache.submissions import EMAIL_SUBMISSION, SubmissionRecord, SubmissionStore
from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext
from gateway.jmap.errors import MethodError
from gateway.jmap.protocol import JsonObject
from gateway.jmap.query import collation_key, query_changes, resolve_collation
from gateway.jmap.standard import (
    Comparator,
    InvalidValue,
    as_id_list,
    as_string,
    as_utc_date,
    parse_query,
    parse_query_changes,
)
from gateway.offload import off_loop
from gateway.translators.responses import query_changes_response, windowed_response

# Snapshots taken for one queryChanges before giving up on one that agrees with its changes.
SNAPSHOT_ATTEMPTS = 3
# Submissions filtered and sorted on the loop; more go beside it (10 000 take ~50 ms).
INLINE_RECORDS = 500


@dataclass(frozen=True)
class _Row:
    """What filters and sorts read of one submission."""

    record: SubmissionRecord
    send_at: datetime


def _row(record: SubmissionRecord) -> _Row:
    return _Row(record, datetime.fromisoformat(record.send_at.replace("Z", "+00:00")))


# RFC 8621 7.3: the FilterCondition properties: how each is read, and how it matches.
_CONDITIONS: dict[str, tuple[Callable[[object], Any], Callable[[Any, _Row], bool]]] = {
    "identityIds": (as_id_list, lambda v, r: r.record.identity_id in v),
    "emailIds": (as_id_list, lambda v, r: r.record.email_id in v),
    "threadIds": (as_id_list, lambda v, r: r.record.thread_id in v),
    "undoStatus": (as_string, lambda v, r: r.record.undo_status == v),
    "before": (as_utc_date, lambda v, r: r.send_at < v),
    "after": (as_utc_date, lambda v, r: r.send_at >= v),
}
# Conditions on a property that changes after creation (the rest never move a result).
_MUTABLE_CONDITIONS = frozenset({"undoStatus"})


@dataclass(frozen=True)
class _Condition:
    values: Mapping[str, Any]


@dataclass(frozen=True)
class _Operator:
    operator: str
    conditions: tuple[_Filter, ...]


_Filter = _Condition | _Operator


def parse_filter(value: JsonObject | None) -> _Filter | None:
    """The ``filter`` argument (its shape and size already checked by parse_query); an
    unknown condition property is unsupportedFilter, a wrong value invalidArguments."""
    if value is None:
        return None
    unknown: set[str] = set()
    parsed = _parse(value, unknown)
    if unknown:
        names = ", ".join(sorted(unknown))
        raise MethodError("unsupportedFilter", f"Unsupported filter properties: {names}")
    return parsed


def _parse(value: JsonObject, unknown: set[str]) -> _Filter:
    if "operator" in value:
        return _Operator(value["operator"], tuple(_parse(c, unknown) for c in value["conditions"]))
    unknown.update(name for name in value if name not in _CONDITIONS)
    values = {}
    for name, item in value.items():
        if name in _CONDITIONS:
            try:
                values[name] = _CONDITIONS[name][0](item)
            except InvalidValue as problem:
                raise MethodError.invalid_arguments(
                    f"filter: {name} {problem}", arguments=["filter"]
                ) from None
    return _Condition({k: set(v) if isinstance(v, list) else v for k, v in values.items()})


def matches(query_filter: _Filter | None, row: _Row) -> bool:
    if query_filter is None:
        return True
    if isinstance(query_filter, _Condition):
        # RFC 8621 7.3: all given conditions must match; none given matches everything.
        return all(_CONDITIONS[k][1](v, row) for k, v in query_filter.values.items())
    results = (matches(nested, row) for nested in query_filter.conditions)
    if query_filter.operator == "AND":
        return all(results)
    if query_filter.operator == "OR":
        return any(results)
    return not any(results)


def _mutable(query_filter: _Filter | None) -> bool:
    """Whether the filter reads a property that may change after creation."""
    if query_filter is None:
        return False
    if isinstance(query_filter, _Condition):
        return bool(_MUTABLE_CONDITIONS & query_filter.values.keys())
    return any(_mutable(nested) for nested in query_filter.conditions)


# RFC 8621 7.3: the sorts a server MUST support. The RFC names the date "sentAt" though the
# property is sendAt; both are accepted.
_SORTS: dict[str, Callable[[_Row], Any]] = {
    "emailId": lambda r: r.record.email_id,
    "threadId": lambda r: r.record.thread_id,
    "sentAt": lambda r: r.send_at,
    "sendAt": lambda r: r.send_at,
}
_STRING_SORTS = frozenset({"emailId", "threadId"})


@dataclass(frozen=True)
class _SortKey:
    key: Callable[[_Row], Any]
    is_ascending: bool


def parse_sort(comparators: Sequence[Comparator] | None) -> list[_SortKey]:
    """The ``sort`` argument; none given is the order they were sent in (sendAt)."""
    if not comparators:
        return [_SortKey(_SORTS["sendAt"], True)]
    return [_sort_key(comparator) for comparator in comparators]


def _sort_key(comparator: Comparator) -> _SortKey:
    sort = _SORTS.get(comparator.property)
    if sort is None:
        raise MethodError(
            "unsupportedSort", f"Cannot sort EmailSubmissions by {comparator.property!r}"
        )
    if comparator.property not in _STRING_SORTS:
        # RFC 8620 5.5: for a property that is not a string, collation is ignored.
        return _SortKey(sort, comparator.is_ascending)
    collation = resolve_collation(comparator.collation)
    return _SortKey(lambda r: collation_key(sort(r), collation), comparator.is_ascending)


def run_query(
    records: Mapping[str, SubmissionRecord], query_filter: _Filter | None, sort: list[_SortKey]
) -> list[str]:
    """The ids of every match, in order; ties in id order, so the order is stable."""
    rows = [row for row in map(_row, records.values()) if matches(query_filter, row)]
    rows.sort(key=lambda r: r.record.id)
    # Stable sorts, last criterion first, make the first criterion the major one.
    for sort_key in reversed(sort):
        rows.sort(key=sort_key.key, reverse=not sort_key.is_ascending)
    return [row.record.id for row in rows]


async def _run(
    records: Mapping[str, SubmissionRecord], query_filter: _Filter | None, sort: list[_SortKey]
) -> list[str]:
    if len(records) < INLINE_RECORDS:
        return run_query(records, query_filter, sort)
    return await off_loop(run_query, records, query_filter, sort)


async def submission_query(
    ctx: CallContext[RequestEnv], arguments: dict[str, Any]
) -> dict[str, Any]:
    args = parse_query(arguments)
    query_filter, sort = parse_filter(args.filter), parse_sort(args.sort)
    # deliveryStatus follows delivery reports arriving as mail (see get.py).
    await ctx.env.catch_up()
    records, state = await ctx.env.index.submissions.snapshot()
    ids = await _run(records, query_filter, sort)
    return windowed_response(args, state, ids)


async def submission_query_changes(
    ctx: CallContext[RequestEnv], arguments: dict[str, Any]
) -> dict[str, Any]:
    args = parse_query_changes(arguments)
    query_filter, sort = parse_filter(args.filter), parse_sort(args.sort)
    await ctx.env.catch_up()
    store = ctx.env.index.submissions
    records, state, changed = await _agreeing(store, args.since_query_state)
    ids = await _run(records, query_filter, sort)
    result = query_changes(
        changed=changed,
        current=ids,
        up_to_id=args.up_to_id,
        max_changes=args.max_changes,
        immutable_query=not _mutable(query_filter),
    )
    return query_changes_response(args, state, result, ids)


async def _agreeing(
    store: SubmissionStore, since: str
) -> tuple[dict[str, SubmissionRecord], str, set[str]]:
    """The records, their state and the ids changed since ``since`` up to exactly that state
    (a write between the two reads would leave a change out: read both again)."""
    for _ in range(SNAPSHOT_ATTEMPTS):
        records, state = await store.snapshot()
        changes = await store.state_log.changes(EMAIL_SUBMISSION, since, None)
        if changes.new_state == state:
            return records, state, {*changes.created, *changes.updated, *changes.destroyed}
    raise CannotCalculateChanges("the submissions kept changing while they were read")
