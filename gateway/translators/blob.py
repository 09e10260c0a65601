"""Blob/copy (RFC 8620 6.3), the core capability's method for binary data.

Blobs are copied between accounts, and the gateway serves exactly one account per user (see
``Services.accounts``). RFC 8620 6.3, unlike /copy (5.4), does not require the two accounts
to differ, and within the caller's own account every blob is already readable under its id:
a copy there leaves each blob that exists where it is, and ``copied`` maps its id to itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.env import RequestEnv
from gateway.jmap.capabilities import CORE
from gateway.jmap.dispatch import CallContext, Method
from gateway.jmap.errors import MethodError, SetError
from gateway.jmap.standard import ArgReader, as_id, as_id_list
from gateway.translators.copying import check_from_account, not_between_accounts
from gateway.translators.email.blob_read import blob_exists


@dataclass(frozen=True)
class BlobCopyArgs:
    from_account_id: str
    account_id: str
    blob_ids: list[str]


def parse_blob_copy(arguments: dict[str, Any], max_objects: int) -> BlobCopyArgs:
    reader = ArgReader(arguments, {"fromAccountId", "accountId", "blobIds"})
    parsed = BlobCopyArgs(
        from_account_id=reader.required("fromAccountId", as_id),
        account_id=reader.required("accountId", as_id),
        blob_ids=reader.required("blobIds", as_id_list),
    )
    reader.finish()
    # RFC 8620 2 maxObjectsInSet: each blob is a record created in the target account.
    if len(parsed.blob_ids) > max_objects:
        raise MethodError("requestTooLarge", f"More than {max_objects} blobIds")
    return parsed


async def blob_copy(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    env = ctx.env
    args = parse_blob_copy(arguments, env.services.limits.max_objects_in_set)
    check_from_account(ctx.accounts, args.from_account_id)
    # Blobs are read as the caller's own account; any other pair would need real copying.
    if not args.from_account_id == args.account_id == env.principal.account_id:
        raise not_between_accounts("blobs")
    copied: dict[str, str] = {}
    not_copied: dict[str, dict[str, Any]] = {}
    for blob_id in dict.fromkeys(args.blob_ids):
        if await blob_exists(env, blob_id):
            copied[blob_id] = blob_id
        else:
            # RFC 8620 6.3: notFound when the blob to copy cannot be found.
            not_copied[blob_id] = SetError("notFound", "No such blob").to_dict()
    return {
        "fromAccountId": args.from_account_id,
        "accountId": args.account_id,
        "copied": copied or None,
        "notCopied": not_copied or None,
    }


BLOB_COPY: Method[RequestEnv] = Method("Blob/copy", CORE, blob_copy, writes=True)
