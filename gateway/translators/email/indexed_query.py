"""The Email/query windows the index's sorted sets answer in O(log n + limit).

Recognised (any window: position, negative position, anchor, anchorOffset, limit, total):

* ``inMailbox`` with ``notKeyword: $seen``, and ``hasKeyword: $flagged`` alone or with
  ``inMailbox``, by receivedAt either way: a window of the sparse ``unseen`` / ``flagged``
  sets;
* ``inMailbox`` alone sorted by ``size`` either way: the folder's size order, built on first
  use;
* any of these, or ``inMailbox`` alone, or no filter, by receivedAt with
  ``collapseThreads``: the same sets walked in order, a thread's first email standing for it
  (RFC 8621 4.4.3), as long as the window lies within the first
  gateway.cache.query_index.MAX_COLLAPSE_SCAN emails.

Anything else (or a window the structures cannot reach cheaply) returns None, and the general
path (gateway.translators.email.query) answers: it reads and filters the records, and gives
the same ids in the same order, ties by id in the first comparator's direction.
"""

from __future__ import annotations

from typing import Any

from gateway.cache.emails import EmailStore
from gateway.cache.query_index import AnchorNotFound, Page, QueryIndex, Subset, Unanswered
from gateway.jmap.errors import MethodError
from gateway.jmap.query import Window
from gateway.jmap.standard import QueryArgs
from gateway.translators.email.filtering import Filter, Leaf, Node, SortKey
from gateway.translators.responses import query_response

# The one keyword condition each sparse set answers (flags as filtering._flag keeps them).
_SPARSE = {("notKeyword", "\\seen"): Subset.UNSEEN, ("hasKeyword", "\\flagged"): Subset.FLAGGED}


async def indexed_query(
    store: EmailStore,
    args: QueryArgs,
    tree: Filter | None,
    sort: list[SortKey],
    collapse: bool,
) -> dict[str, Any] | None:
    """The Email/query response from the query structures, or None if they cannot answer."""
    conditions = _conditions(tree)
    if conditions is None or len(sort) != 1:
        return None
    folder = conditions.pop("inMailbox", None)
    if folder is not None and not isinstance(folder, str):
        return None
    index = QueryIndex(store)
    window: dict[str, Any] = {
        "ascending": sort[0].ascending,
        "position": args.position,
        "anchor": args.anchor,
        "anchor_offset": args.anchor_offset,
        "limit": args.limit,
    }
    try:
        if sort[0].property == "size":
            if conditions or folder is None or collapse:
                return None
            page = await index.sized_window(folder, **window)
        elif sort[0].property == "receivedAt":
            key = _dated_key(index, conditions, folder)
            if key is None:
                return None
            if collapse:
                page = await index.collapsed_window(
                    key,
                    **window,
                    threads_total=folder if not conditions else None,
                    calculate_total=args.calculate_total,
                )
            else:
                page = await index.window(key, **window)
        else:
            return None
    except Unanswered:
        return None
    except AnchorNotFound:
        raise MethodError("anchorNotFound", f"{args.anchor!r} is not in the results") from None
    return _response(args, page)


def _dated_key(index: QueryIndex, conditions: dict[str, Any], folder: str | None) -> str | None:
    """The by-date sorted set holding exactly the emails the conditions match."""
    if not conditions:
        return index.dated_key(Subset.ALL, folder)
    if len(conditions) != 1:
        return None
    ((name, value),) = conditions.items()
    subset = _SPARSE.get((name, value))
    return None if subset is None else index.dated_key(subset, folder)


def _conditions(tree: Filter | None) -> dict[str, Any] | None:
    """The filter as property -> value when it is one condition or an AND of conditions
    on distinct properties (what a single FilterCondition parses to), else None."""
    if tree is None:
        return {}
    if isinstance(tree, Leaf):
        return {tree.name: tree.value}
    if not isinstance(tree, Node) or tree.operator != "AND":
        return None
    found: dict[str, Any] = {}
    for child in tree.children:
        if not isinstance(child, Leaf) or child.name in found:
            return None
        found[child.name] = child.value
    return found


def _response(args: QueryArgs, page: Page) -> dict[str, Any]:
    result = Window(position=page.position, ids=page.ids, limit=None)
    total = page.total if args.calculate_total else None
    return query_response(args.account_id, page.state, result, total)
