"""Email/get and Email/changes (RFC 8621 4.2, 4.3)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.cache.emails import EMAIL, EmailRecord
from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext
from gateway.jmap.errors import MethodError
from gateway.jmap.standard import parse_changes
from gateway.mime.bodyparts import parse_cost, render_cost
from gateway.mime.bodyvalues import EmailBodyValue
from gateway.mime.headers import parse_header_block
from gateway.offload import sized
from gateway.translators.email.blob_ids import message_blob_id, part_blob_id
from gateway.translators.email.fetch import Loaded, load
from gateway.translators.email.properties import EmailGetArgs, Source, parse_email_get
from gateway.translators.email.render import Content, render_email
from gateway.translators.email.values import ValueRequest, body_values
from gateway.translators.keywords import keywords_from_flags
from gateway.translators.mailbox.view import mailbox_view
from gateway.translators.responses import changes_response


async def email_get(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    env = ctx.env
    max_objects = env.services.limits.max_objects_in_get
    args = parse_email_get(arguments, max_objects)
    view = await mailbox_view(env)
    store = env.index.emails
    async with env.upstream() as upstream:
        ids = args.get.ids
        if ids is None:
            if await store.count() > max_objects:
                raise MethodError(
                    "requestTooLarge", f"The account has more than {max_objects} emails"
                )
            ids = await store.all_ids()
        records, state = await store.snapshot(ids)
        visible = {i: r for i, r in records.items() if r.visible}
        loaded = await load(store, upstream, view.records, visible, args.sources)
        values: dict[str, dict[str, EmailBodyValue]] = {}
        if args.wants_body_values:
            request = ValueRequest(
                args.fetch_text, args.fetch_html, args.fetch_all, args.max_body_value_bytes
            )
            structures = {i: s for i, s in loaded.structure.items() if i in visible}
            values = await body_values(
                upstream, store, request, view.records, visible, structures, loaded.messages
            )
    found = [i for i in dict.fromkeys(ids) if i in visible and i not in loaded.vanished]
    emails = [(visible[i], values.get(i, {})) for i in found]
    return {
        "accountId": args.get.account_id,
        "state": state,
        "list": await sized(_render_weight(args, loaded, found), _emails, emails, args, loaded),
        # RFC 8620 5.1: with ids null, notFound is empty (records gone meanwhile are not asked).
        "notFound": []
        if args.get.ids is None
        else [i for i in dict.fromkeys(ids) if i not in found],
    }


def _render_weight(args: EmailGetArgs, loaded: Loaded, found: list[str]) -> int:
    """What rendering the emails costs, in the octets gateway.offload.sized counts: the
    header blocks its header properties parse, and the parts of the trees with their fields
    (what their ``headers`` and ``header:`` properties read)."""
    weight = 0
    for email_id in found:
        if _needs_headers(args):
            weight += parse_cost(loaded.header_block(email_id))
        root = loaded.structure.get(email_id)
        if root is not None:
            weight += render_cost(root)
    return weight


def _emails(
    emails: list[tuple[EmailRecord, dict[str, EmailBodyValue]]], args: EmailGetArgs, loaded: Loaded
) -> list[dict[str, Any]]:
    return [_email(record, args, loaded, values) for record, values in emails]


def _email(
    record: EmailRecord,
    args: EmailGetArgs,
    loaded: Loaded,
    values: dict[str, EmailBodyValue],
) -> dict[str, Any]:
    email_id = record.id
    headers = parse_header_block(loaded.header_block(email_id)) if _needs_headers(args) else []
    content = Content(
        headers=headers,
        summary=loaded.summary.get(email_id),
        root=loaded.structure.get(email_id),
        preview=loaded.preview.get(email_id, ""),
        values=values,
        part_blob_id=lambda part_id: part_blob_id(email_id, part_id),
    )
    return render_email(
        args.properties, args.body_properties, content, lambda prop: _METADATA[prop](record)
    )


def _needs_headers(args: EmailGetArgs) -> bool:
    return bool(args.sources & {Source.FIELDS, Source.HEADER})


def utc_date(seconds: int) -> str:
    """RFC 8620 1.4 UTCDate: ``2014-10-30T06:12:00Z``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# RFC 8621 4.1.1: what the index knows of a stored email.
_METADATA: dict[str, Callable[[EmailRecord], Any]] = {
    "id": lambda record: record.id,
    "blobId": lambda record: message_blob_id(record.id),
    "threadId": lambda record: record.thread_id,
    "mailboxIds": lambda record: record.mailbox_ids,
    "keywords": lambda record: keywords_from_flags(record.flags),
    "size": lambda record: record.size,
    "receivedAt": lambda record: utc_date(record.received_at),
}


async def email_changes(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    return await changes_since(ctx.env, arguments, EMAIL)


async def changes_since(
    env: RequestEnv, arguments: dict[str, Any], data_type: str
) -> dict[str, Any]:
    """Foo/changes (RFC 8620 5.2) of an email-index type, after catching up."""
    args = parse_changes(arguments)
    await env.catch_up()
    changes = await env.index.emails.state.changes(data_type, args.since_state, args.max_changes)
    return changes_response(args.account_id, changes)
