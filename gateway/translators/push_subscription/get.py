"""PushSubscription/get (RFC 8620 7.2): a standard /get without accountId or state.

The subscriptions are the caller's own account's: no id names another user's (the records are
looked up only under the caller's account). Expired ones are erased on the way (the store).
"""

from __future__ import annotations

from typing import Any

from gateway.cache.push_subscriptions import PushSubscriptions
from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext
from gateway.jmap.errors import MethodError
from gateway.jmap.getting import check_all, found_ids, not_found
from gateway.jmap.standard import (
    ArgReader,
    as_id_list,
    as_string_list,
    check_properties,
    nullable,
)
from gateway.translators.push_subscription.properties import PRIVATE, PROPERTIES, render


async def push_subscription_get(
    ctx: CallContext[RequestEnv], arguments: dict[str, Any]
) -> dict[str, Any]:
    env = ctx.env
    max_objects = env.services.limits.max_objects_in_get
    # RFC 8620 7.2: no accountId argument.
    reader = ArgReader(arguments, {"ids", "properties"})
    ids = reader.optional("ids", nullable(as_id_list), None)
    requested = reader.optional("properties", nullable(as_string_list), None)
    reader.finish()
    if ids is not None and len(ids) > max_objects:
        raise MethodError("requestTooLarge", f"More than {max_objects} ids requested")
    check_properties("properties", requested)
    # RFC 8620 7.2: "If one of them is explicitly requested, the method call MUST be rejected
    # with a forbidden error."
    private = sorted(PRIVATE.intersection(requested or ()))
    if private:
        raise MethodError("forbidden", f"{' and '.join(private)} are never returned")
    properties = PROPERTIES.select(requested)
    records = await PushSubscriptions.of(env.services.store).get_all(env.principal.account_id)
    if ids is None:
        check_all(len(records), max_objects, "push subscriptions")
    asked = list(records) if ids is None else ids
    objects = [render(i, records[i], properties) for i in found_ids(asked, records)]
    # RFC 8620 7.2: "It also does not return a state argument."
    return {"list": objects, "notFound": not_found(ids, records)}
