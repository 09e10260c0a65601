"""EmailSubmission/set (RFC 8621 7.5): create sends, update cancels, destroy forgets.

Creates run one after another, each checked and readied (create.py), then sent at once with
the caller's login (deliver.py) or, when the client asked for a delay (RFC 4865 HOLDFOR /
HOLDUNTIL in mailFrom, or a sendAt), held to be sent later (hold.py). One user's
sends are thus one at a time per request, and the requests one user has in flight are
bounded across replicas (GATEWAY_MAX_CONCURRENT_REQUESTS).

An update may only change undoStatus to "canceled" (7: undoStatus is the one property that
is not immutable or server-set, and "canceled" the one value a client sets). A destroy
removes the record only (7.5: it "MUST NOT affect the deliveries it represents"); a pending
submission is not destroyed, since its record is what a held send is made from: it is
canceled first (7.5 lets the server forbid destroying).

Then the implicit Email/set of onSuccessUpdateEmail / onSuccessDestroyEmail (on_success.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from gateway.cache.submissions import SubmissionRecord, SubmissionStore
from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext, HandlerResult
from gateway.jmap.errors import SetError
from gateway.jmap.protocol import Invocation, JsonObject
from gateway.jmap.standard import (
    as_reference_list,
    as_reference_map,
    check_if_in_state,
    nullable,
    parse_set,
)
from gateway.translators.submission.create import prepare
from gateway.translators.submission.deliver import deliver
from gateway.translators.submission.hold import cancel, hold
from gateway.translators.submission.objects import render
from gateway.translators.submission.on_success import email_changes, implicit_email_set

log = logging.getLogger(__name__)
_T = TypeVar("_T")

METHOD = "EmailSubmission/set"
ON_SUCCESS = {
    "onSuccessUpdateEmail": (nullable(as_reference_map), None),
    "onSuccessDestroyEmail": (nullable(as_reference_list), None),
}
# RFC 8620 5.3: the server-set properties (and those the server filled in) of a created one.
_CREATED = (
    "id",
    "threadId",
    "sendAt",
    "undoStatus",
    "deliveryStatus",
    "dsnBlobIds",
    "mdnBlobIds",
)


async def email_submission_set(
    ctx: CallContext[RequestEnv], arguments: JsonObject
) -> HandlerResult:
    env = ctx.env
    args = parse_set(arguments, env.services.limits.max_objects_in_set, extra=ON_SUCCESS)
    store = env.index.submissions
    state = await store.state()
    check_if_in_state(args.if_in_state, state)
    # Each key the onSuccess arguments may use, of a submission that succeeded: its emailId.
    succeeded: dict[str, str] = {}
    created: dict[str, JsonObject] = {}
    not_created: dict[str, SetError] = {}
    for creation_id, props in (args.create or {}).items():
        result = await _failing_alone(_create(ctx, props), "the submission was not created")
        if isinstance(result, SetError):
            not_created[creation_id] = result
            continue
        ctx.created_ids[creation_id] = result.id
        created[creation_id] = _created(result, envelope_given=props.get("envelope") is not None)
        succeeded[f"#{creation_id}"] = result.email_id
    try:
        updated, not_updated = await _update(ctx, args.update or {}, succeeded)
    except Exception as exc:  # reading the records failed: nothing was canceled
        updated, not_updated = {}, _all_failed(args.update or {}, "not canceled", exc)
    try:
        destroyed, not_destroyed = await _destroy(ctx, args.destroy or [], succeeded)
    except Exception as exc:
        destroyed, not_destroyed = [], _all_failed(args.destroy or [], "not destroyed", exc)
    response: JsonObject = {
        "accountId": args.account_id,
        "oldState": state,
        "newState": await _new_state(store, state),
        "created": created or None,
        "notCreated": not_created or None,
        "updated": updated or None,
        "notUpdated": not_updated or None,
        "destroyed": destroyed or None,
        "notDestroyed": not_destroyed or None,
    }
    email_update, email_destroy = email_changes(
        args.extra["onSuccessUpdateEmail"], args.extra["onSuccessDestroyEmail"], succeeded
    )
    implicit = await implicit_email_set(ctx, args.account_id, email_update, email_destroy)
    if implicit is None:
        return response
    # RFC 8621 7.5: the Email/set response MUST follow the EmailSubmission/set one.
    return [Invocation(METHOD, response, ctx.call_id), implicit]


async def _failing_alone(work: Awaitable[_T], what: str) -> _T | SetError:
    """One create, update or destroy whose unexpected failure is its own SetError, not the
    method's: an earlier create of the call may have sent mail, and a method error in place of
    the response would hide that and invite the client to send it again."""
    try:
        return await work
    except SetError as error:
        return error
    except Exception as exc:
        return SetError("serverFail", what, cause=exc)


def _all_failed(keys: Iterable[str], what: str, exc: Exception) -> dict[str, SetError]:
    return {key: SetError("serverFail", f"the submission was {what}", cause=exc) for key in keys}


async def _new_state(store: SubmissionStore, old_state: str) -> str:
    """The state after the writes; if it cannot be read, the old one, from which /changes
    still tells the client everything (a response must go back once mail was sent)."""
    try:
        return await store.state()
    except Exception:
        log.exception("EmailSubmission/set: the new state could not be read")
        return old_state


async def _create(
    ctx: CallContext[RequestEnv], props: Mapping[str, Any]
) -> SubmissionRecord | SetError:
    email_id = props.get("emailId")
    if isinstance(email_id, str) and email_id.startswith("#"):
        # RFC 8620 5.3: "#" and the creation id of an Email created earlier in the request.
        resolved = ctx.created_ids.get(email_id[1:])
        if resolved is None:
            return SetError.invalid_properties(["emailId"], f"no Email was created as {email_id}")
        props = {**props, "emailId": resolved}
    prepared = await prepare(ctx.env, props)
    if isinstance(prepared, SetError):
        return prepared
    if prepared.hold_until is not None and prepared.hold_until > datetime.now(UTC):
        # Asked for later: held where delayed sending is configured (hold.py).
        return await hold(ctx.env, prepared, prepared.hold_until)
    return await deliver(ctx.env, prepared)


def _created(record: SubmissionRecord, *, envelope_given: bool) -> JsonObject:
    """RFC 8620 5.3 created: the server-set properties, and the envelope 7.5 made."""
    return render(record, [*_CREATED, *(() if envelope_given else ("envelope",))])


def _key_id(ctx: CallContext[RequestEnv], key: str) -> str | None:
    return ctx.created_ids.get(key[1:]) if key.startswith("#") else key


async def _update(
    ctx: CallContext[RequestEnv], update: Mapping[str, JsonObject], succeeded: dict[str, str]
) -> tuple[dict[str, None], dict[str, SetError]]:
    """RFC 8621 7.5: undoStatus to "canceled" is the one change a client may ask."""
    updated: dict[str, None] = {}
    failed: dict[str, SetError] = {}
    ids = {key: _key_id(ctx, key) for key in update}
    records = await ctx.env.index.submissions.get(i for i in ids.values() if i)
    for key, patch in update.items():
        record = records.get(ids[key] or "")
        if record is None:
            failed[key] = SetError("notFound", f"no EmailSubmission {key}")
            continue
        bad = sorted(name for name in patch if name != "undoStatus")
        if bad or patch.get("undoStatus") != "canceled":
            failed[key] = SetError.invalid_properties(
                bad or ["undoStatus"], 'only undoStatus may change, and only to "canceled"'
            )
            continue
        result = await _failing_alone(cancel(ctx.env, record), "the submission was not canceled")
        if isinstance(result, SetError):
            failed[key] = result
        else:
            updated[key] = None
            succeeded[key] = record.email_id
    return updated, failed


async def _destroy(
    ctx: CallContext[RequestEnv], destroy: list[str], succeeded: dict[str, str]
) -> tuple[list[str], dict[str, SetError]]:
    """The records forgotten (what was sent stays sent); a pending one is canceled first."""
    store = ctx.env.index.submissions
    ids = {key: _key_id(ctx, key) for key in destroy}
    records = await store.get(i for i in ids.values() if i)
    failed: dict[str, SetError] = {}
    wanted: dict[str, str] = {}
    for key in destroy:
        record = records.get(ids[key] or "")
        if record is None:
            failed[key] = SetError("notFound", f"no EmailSubmission {key}")
        elif record.undo_status == "pending":
            failed[key] = SetError(
                "forbidden", 'a pending submission is set to undoStatus "canceled" first'
            )
        else:
            wanted[record.id] = key
    gone = set(await store.destroy(wanted))
    destroyed: list[str] = []
    for submission_id, key in wanted.items():
        if submission_id in gone:
            destroyed.append(submission_id)
            succeeded[key] = records[submission_id].email_id
        else:
            failed[key] = SetError("notFound", f"no EmailSubmission {key}")
    return destroyed, failed
