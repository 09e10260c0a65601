"""Thread/get and Thread/changes (RFC 8621 3)."""

from __future__ import annotations

from typing import Any

from gateway.cache.emails import THREAD
from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext
from gateway.jmap.errors import MethodError
from gateway.jmap.standard import parse_get
from gateway.translators.email.get import changes_since

PROPERTIES = ("id", "emailIds")


async def thread_get(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    env = ctx.env
    max_objects = env.services.limits.max_objects_in_get
    args = parse_get(arguments, max_objects)
    unknown = [p for p in args.properties or () if p not in PROPERTIES]
    if unknown:
        raise MethodError.invalid_arguments(
            f"properties: not Thread properties: {unknown}", arguments=["properties"]
        )
    await env.catch_up()
    store = env.index.emails
    ids = args.ids
    if ids is None:
        if await store.thread_count() > max_objects:
            raise MethodError("requestTooLarge", f"The account has more than {max_objects} threads")
        ids = await store.thread_ids()
    members, state = await store.thread_snapshot(ids)
    requested = PROPERTIES if args.properties is None else args.properties
    wanted = ["id", *(p for p in dict.fromkeys(requested) if p != "id")]
    found = [i for i in dict.fromkeys(ids) if i in members]
    return {
        "accountId": args.account_id,
        "state": state,
        "list": [{p: (i if p == "id" else members[i]) for p in wanted} for i in found],
        "notFound": [] if args.ids is None else [i for i in dict.fromkeys(ids) if i not in members],
    }


async def thread_changes(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    return await changes_since(ctx.env, arguments, THREAD)
