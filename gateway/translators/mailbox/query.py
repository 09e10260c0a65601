"""Mailbox/query and Mailbox/queryChanges (RFC 8621 2.3, 2.4).

The query state is the Mailbox state: any mailbox change may move a result. queryChanges
reports every mailbox changed since the old state as removed, and those of them in the results
now as added at their index, which RFC 8620 5.6 allows when old results are not kept.
"""

from __future__ import annotations

from typing import Any

from gateway.cache.mailboxes import MAILBOX
from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext
from gateway.jmap.query import query_changes
from gateway.jmap.standard import Extra, as_bool, parse_query, parse_query_changes
from gateway.translators.mailbox.filtering import (
    parse_mailbox_filter,
    parse_mailbox_sort,
    run_mailbox_query,
    with_descendants,
)
from gateway.translators.mailbox.view import mailbox_view
from gateway.translators.responses import query_changes_response, windowed_response

# RFC 8621 2.3: the arguments Mailbox/query and Mailbox/queryChanges add.
TREE_ARGUMENTS: dict[str, Extra] = {
    "sortAsTree": (as_bool, False),
    "filterAsTree": (as_bool, False),
}


async def mailbox_query(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    args = parse_query(arguments, extra=TREE_ARGUMENTS)
    sort_as_tree, filter_as_tree = args.extra["sortAsTree"], args.extra["filterAsTree"]
    mailbox_filter, sort = parse_mailbox_filter(args.filter), parse_mailbox_sort(args.sort)
    view = await mailbox_view(ctx.env)
    ids = run_mailbox_query(
        list(view.objects().values()),
        mailbox_filter,
        sort,
        sort_as_tree=sort_as_tree,
        filter_as_tree=filter_as_tree,
    )
    return windowed_response(args, view.state, ids)


async def mailbox_query_changes(
    ctx: CallContext[RequestEnv], arguments: dict[str, Any]
) -> dict[str, Any]:
    args = parse_query_changes(arguments, extra=TREE_ARGUMENTS)
    sort_as_tree, filter_as_tree = args.extra["sortAsTree"], args.extra["filterAsTree"]
    mailbox_filter, sort = parse_mailbox_filter(args.filter), parse_mailbox_sort(args.sort)
    view = await mailbox_view(ctx.env)
    changes = await view.store.state.changes(MAILBOX, args.since_query_state, None)
    mailboxes = list(view.objects().values())
    ids = run_mailbox_query(
        mailboxes, mailbox_filter, sort, sort_as_tree=sort_as_tree, filter_as_tree=filter_as_tree
    )
    changed = {*changes.created, *changes.updated, *changes.destroyed}
    if sort_as_tree or filter_as_tree:
        # A moved or renamed parent moves its whole subtree.
        changed |= with_descendants(mailboxes, changed)
    result = query_changes(
        changed=changed, current=ids, up_to_id=args.up_to_id, max_changes=args.max_changes
    )
    return query_changes_response(args, changes.new_state, result, ids)
