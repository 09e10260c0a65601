"""The /changes, /query and /queryChanges responses (RFC 8620 5.2, 5.5, 5.6), the same for
every data type."""

from __future__ import annotations

from typing import Any

from gateway.cache.changes import Changes
from gateway.jmap.query import QueryChangesResult, Window, window
from gateway.jmap.standard import QueryArgs, QueryChangesArgs


def changes_response(account_id: str, changes: Changes) -> dict[str, Any]:
    return {
        "accountId": account_id,
        "oldState": changes.old_state,
        "newState": changes.new_state,
        "hasMoreChanges": changes.has_more_changes,
        "created": changes.created,
        "updated": changes.updated,
        "destroyed": changes.destroyed,
    }


def query_response(
    account_id: str, query_state: str, result: Window, total: int | None
) -> dict[str, Any]:
    """``total`` only when the client asked for it (calculateTotal)."""
    response: dict[str, Any] = {
        "accountId": account_id,
        "queryState": query_state,
        "canCalculateChanges": True,
        "position": result.position,
        "ids": result.ids,
    }
    if total is not None:
        response["total"] = total
    if result.limit is not None:
        response["limit"] = result.limit
    return response


def windowed_response(args: QueryArgs, query_state: str, ids: list[str]) -> dict[str, Any]:
    """The /query response of every matching id, in order: the client's window of them
    (position or anchor, limit) and their count when asked."""
    result = window(
        ids,
        position=args.position,
        anchor=args.anchor,
        anchor_offset=args.anchor_offset,
        limit=args.limit,
    )
    return query_response(
        args.account_id, query_state, result, len(ids) if args.calculate_total else None
    )


def query_changes_response(
    args: QueryChangesArgs, new_state: str, result: QueryChangesResult, ids: list[str]
) -> dict[str, Any]:
    """RFC 8620 5.6: ``result`` bridging to ``new_state``, whose query matches ``ids``."""
    response: dict[str, Any] = {
        "accountId": args.account_id,
        "oldQueryState": args.since_query_state,
        "newQueryState": new_state,
        "removed": result.removed,
        "added": [{"id": item.id, "index": item.index} for item in result.added],
    }
    if args.calculate_total:
        response["total"] = len(ids)
    return response
