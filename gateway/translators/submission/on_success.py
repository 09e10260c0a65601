"""onSuccessUpdateEmail and onSuccessDestroyEmail (RFC 8621 7.5): the implicit Email/set.

After every create, update and destroy of an EmailSubmission/set, one Email/set call MUST be
made for the Emails of the submissions that succeeded, its response returned after the
EmailSubmission/set one. Keys name a submission by id, or by ``#creationId`` for one created
in the same call; a key naming a submission that did not succeed in this call is skipped,
as the change was asked only "if the create/update/destroy succeeds". The typical use moves
a draft just sent: ``{"keywords/$draft": null, "mailboxIds/<drafts>": null,
"mailboxIds/<sent>": true}``.

The Email/set runs as the translators' own Email/set (translators.email.set), with the same
request context (its ``#creationId`` references resolve), so its rules, retries and
SetErrors are exactly an Email/set's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from gateway.env import RequestEnv
from gateway.jmap import incidents
from gateway.jmap.dispatch import CallContext
from gateway.jmap.errors import MethodError
from gateway.jmap.protocol import Invocation, JsonObject
from gateway.translators.email.set import email_set

EMAIL_SET = "Email/set"


def email_changes(
    update: Mapping[str, JsonObject] | None,
    destroy: list[str] | None,
    succeeded: Mapping[str, str],
) -> tuple[dict[str, JsonObject], list[str]]:
    """The Email/set update and destroy asked for the submissions that succeeded.

    ``succeeded`` maps each key a client may use (a submission id, or ``#creationId``) of a
    submission created, updated or destroyed in this call to its emailId.
    """
    email_update = {
        succeeded[key]: patch for key, patch in (update or {}).items() if key in succeeded
    }
    email_destroy = list(dict.fromkeys(succeeded[k] for k in destroy or () if k in succeeded))
    return email_update, email_destroy


async def implicit_email_set(
    ctx: CallContext[RequestEnv],
    account_id: str,
    update: dict[str, JsonObject],
    destroy: list[str],
) -> Invocation | None:
    """The implicit Email/set's response (an "error" one if it failed); None when there is
    nothing to change."""
    if not update and not destroy:
        return None
    arguments: dict[str, Any] = {"accountId": account_id}
    if update:
        arguments["update"] = update
    if destroy:
        arguments["destroy"] = destroy
    call = replace(ctx, method=EMAIL_SET)
    try:
        return Invocation(EMAIL_SET, await email_set(call, arguments), ctx.call_id)
    except MethodError as error:
        # The submissions stand: only the Email/set failed, and its response says so.
        return Invocation("error", error.to_arguments(), ctx.call_id)
    except Exception as exc:  # the sent mail's response must still be returned
        failure = incidents.unexpected(EMAIL_SET, ctx.call_id, exc)
        return Invocation("error", failure.to_arguments(), ctx.call_id)
