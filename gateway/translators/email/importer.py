"""Email/import (RFC 8621 4.8): uploaded messages stored as new Emails.

The blob's octets go upstream unchanged, with APPEND's date argument carrying receivedAt
(RFC 3501 6.3.11), so the new Email's blobId names exactly the uploaded octets.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext
from gateway.jmap.errors import MethodError, SetError
from gateway.jmap.standard import (
    ArgReader,
    as_id,
    as_id_map,
    as_string,
    check_if_in_state,
    nullable,
)
from gateway.mime.bodyparts import parse_cost
from gateway.mime.headers import as_text, parse_header_block
from gateway.offload import sized
from gateway.translators.email.blob_read import BlobTooLarge, message_structure, read_blob
from gateway.translators.email.creation import storable_received_at, store_messages

ALLOWED = frozenset({"blobId", "mailboxIds", "keywords", "receivedAt"})


async def email_import(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    env = ctx.env
    reader = ArgReader(arguments, {"accountId", "ifInState", "emails"})
    account_id = reader.required("accountId", as_id)
    if_in_state = reader.optional("ifInState", nullable(as_string), None)
    emails = reader.required("emails", as_id_map)
    reader.finish()
    limit = env.services.limits.max_objects_in_set
    if len(emails) > limit:
        raise MethodError("requestTooLarge", f"More than {limit} emails to import")
    await env.catch_up()
    store = env.index.emails
    old_state = (await store.snapshot(()))[1]
    check_if_in_state(if_in_state, old_state)
    messages: dict[str, tuple[Mapping[str, Any], bytes]] = {}
    failed: dict[str, SetError] = {}
    for creation_id, props in emails.items():
        try:
            messages[creation_id] = (props, await _message(env, props))
        except SetError as error:
            failed[creation_id] = error
    defaults = {
        cid: await sized(parse_cost(m), _latest_received, m) for cid, (p, m) in messages.items()
    }
    created, not_created = await store_messages(
        ctx,
        messages,
        {cid: moment for cid, moment in defaults.items() if moment is not None},
    )
    failed.update(not_created)
    return {
        "accountId": account_id,
        "oldState": old_state,
        "newState": (await store.snapshot(()))[1],
        "created": created or None,
        # SetErrors as they are: the dispatcher writes them out, logging failures' causes.
        "notCreated": dict(failed) or None,
    }


async def _message(env: RequestEnv, props: Mapping[str, Any]) -> bytes:
    unknown = [name for name in props if name not in ALLOWED]
    if unknown:
        raise SetError.invalid_properties(unknown, "not an EmailImport property")
    blob_id = props.get("blobId")
    if not isinstance(blob_id, str):
        raise SetError.invalid_properties(["blobId"], "a blob id is required")
    try:
        message = await read_blob(env, blob_id, env.services.limits.max_size_upload)
    except BlobTooLarge:
        raise SetError("tooLarge", "the message is larger than the server accepts") from None
    if message is None:
        # RFC 8621 4.8: an unknown blobId is invalidProperties.
        raise SetError.invalid_properties(["blobId"], "no such blob")
    if not await sized(parse_cost(message), _looks_like_message, message):
        raise SetError("invalidEmail", "the blob is not an RFC 5322 message")
    return message


def _looks_like_message(message: bytes) -> bool:
    """A header section of fields; NUL octets, which IMAP servers refuse, are not mail."""
    return b"\0" not in message and message_structure(message) is not None


def _latest_received(message: bytes) -> datetime | None:
    """RFC 8621 4.8: receivedAt defaults to the most recent Received field's date; one no IMAP
    server can store (a forged or broken Received field) leaves the upstream's own time."""
    dates: list[datetime] = []
    for field in parse_header_block(message):
        if field.name.lower() != "received":
            continue
        _, semicolon, when = as_text(field.value).rpartition(";")
        if not semicolon:
            continue
        try:
            moment = parsedate_to_datetime(when.strip())
        except (TypeError, ValueError):
            continue
        if moment.tzinfo is not None:
            dates.append(moment.astimezone(UTC))
    latest = max(dates, default=None)
    return latest if latest is not None and storable_received_at(latest) else None
