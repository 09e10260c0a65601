"""Email/copy (RFC 8621 4.7, RFC 8620 5.4).

A /copy goes from one account to another (RFC 8620 5.4: accountId MUST differ from
fromAccountId), and the gateway serves exactly one account per user (see
``Services.accounts``): every valid call names a fromAccountId the caller does not have. The
arguments are checked in full first, so a bad call gets invalidArguments before any account
error, as a client fixing its call one error at a time expects.
"""

from __future__ import annotations

from typing import Any, NoReturn

from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext
from gateway.jmap.standard import parse_copy
from gateway.translators.copying import check_from_account, not_between_accounts


async def email_copy(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> NoReturn:
    args = parse_copy(arguments, ctx.env.services.limits.max_objects_in_set)
    check_from_account(ctx.accounts, args.from_account_id)
    # A second account of the caller: copying would need its own upstream session.
    raise not_between_accounts("emails")
