"""Mailbox/get and Mailbox/changes (RFC 8621 2.1, 2.2)."""

from __future__ import annotations

from typing import Any

from gateway.cache.mailboxes import MAILBOX
from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext
from gateway.jmap.errors import MethodError
from gateway.jmap.standard import parse_changes, parse_get
from gateway.translators.mailbox.objects import COUNT_PROPERTIES, PROPERTIES
from gateway.translators.mailbox.view import mailbox_view
from gateway.translators.responses import changes_response


async def mailbox_get(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    env = ctx.env
    args = parse_get(arguments, env.services.limits.max_objects_in_get)
    wanted = _properties(args.properties)
    view = await mailbox_view(env)
    objects = view.objects()
    ids = list(objects) if args.ids is None else args.ids
    found = [i for i in dict.fromkeys(ids) if i in objects]
    return {
        "accountId": args.account_id,
        "state": view.state,
        "list": [{p: objects[i][p] for p in wanted} for i in found],
        "notFound": [i for i in dict.fromkeys(ids) if i not in objects],
    }


def _properties(requested: list[str] | None) -> list[str]:
    if requested is None:
        return list(PROPERTIES)
    unknown = [p for p in requested if p not in PROPERTIES]
    if unknown:
        raise MethodError.invalid_arguments(
            f"properties: unknown Mailbox properties {unknown}", arguments=["properties"]
        )
    # RFC 8620 5.1: the id is always returned.
    return ["id", *(p for p in dict.fromkeys(requested) if p != "id")]


async def mailbox_changes(
    ctx: CallContext[RequestEnv], arguments: dict[str, Any]
) -> dict[str, Any]:
    env = ctx.env
    args = parse_changes(arguments)
    view = await mailbox_view(env)
    changes = await view.store.state.changes(MAILBOX, args.since_state, args.max_changes)
    # RFC 8621 2.2: the count properties when nothing else changed, else null.
    only_counts = changes.updated and changes.only_minor_updates
    return {
        **changes_response(args.account_id, changes),
        "updatedProperties": COUNT_PROPERTIES if only_counts else None,
    }
