"""Email/get and Email/changes (RFC 8621 4.2, 4.3)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from gateway.cache.emails import EMAIL, EmailRecord, EmailStore
from gateway.cache.mailboxes import MailboxRecord
from gateway.env import RequestEnv
from gateway.imap.lazy import LazyConnection
from gateway.jmap.dispatch import CallContext
from gateway.jmap.standard import parse_changes
from gateway.mime.bodyparts import parse_cost, render_cost
from gateway.mime.bodyvalues import EmailBodyValue
from gateway.mime.headers import parse_header_block
from gateway.offload import sized
from gateway.translators.email.blob_ids import part_blob_id
from gateway.translators.email.fetch import Loaded, load, read_with_records
from gateway.translators.email.properties import (
    PROPERTIES,
    EmailGetArgs,
    Source,
    parse_email_get,
)
from gateway.translators.email.render import Content, render_email
from gateway.translators.email.values import ValueRequest, body_values
from gateway.translators.getting import Batch, run_get
from gateway.translators.mailbox.view import MailboxView, mailbox_view
from gateway.translators.responses import changes_response


async def email_get(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    max_objects = ctx.env.services.limits.max_objects_in_get
    args = parse_email_get(arguments, max_objects)
    return await run_get(args.get, args.properties, _EmailGet(ctx.env, args), max_objects)


_Found = tuple[EmailRecord, dict[str, EmailBodyValue]]


class _EmailGet:
    """Emails of the index, their content loaded (cache, else upstream, on a connection
    borrowed only then), and rendered once any connection is given back."""

    noun = "emails"

    def __init__(self, env: RequestEnv, args: EmailGetArgs) -> None:
        self.env = env
        self.args = args
        self.loaded = Loaded()
        self.view: MailboxView | None = None

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[_EmailReader]:
        env = self.env
        await env.catch_up()
        async with env.upstream() as upstream:
            yield _EmailReader(self, upstream, env.index.emails)

    async def folders(self) -> Mapping[str, MailboxRecord]:
        """The account's folders, read once and only when an upstream fetch needs them."""
        if self.view is None:
            self.view = await mailbox_view(self.env)
        return self.view.records

    async def render(self, records: list[_Found], properties: list[str]) -> list[dict[str, Any]]:
        args, loaded = self.args, self.loaded
        found = [record.id for record, _ in records]
        return await sized(_render_weight(args, loaded, found), _emails, records, args, loaded)


class _EmailReader:
    def __init__(self, get: _EmailGet, upstream: LazyConnection, store: EmailStore) -> None:
        self.get = get
        self.upstream = upstream
        self.store = store

    async def count(self) -> int:
        return await self.store.count()

    async def all_ids(self) -> list[str]:
        return await self.store.all_ids()

    async def records(self, ids: list[str]) -> Batch[_Found]:
        args, upstream, store = self.get.args, self.upstream, self.store
        # One round trip when the cache holds what the properties need (the warm list screen).
        kinds = read_with_records(args.sources) if args.sources else []
        records, state, cached = await store.snapshot_with(ids, kinds)
        visible = {i: r for i, r in records.items() if r.visible}
        loaded = await load(store, upstream, self.get.folders, visible, args.sources, cached=cached)
        values: dict[str, dict[str, EmailBodyValue]] = {}
        if args.wants_body_values:
            request = ValueRequest(
                args.fetch_text, args.fetch_html, args.fetch_all, args.max_body_value_bytes
            )
            structures = {i: s for i, s in loaded.structure.items() if i in visible}
            folders = await self.get.folders()
            values = await body_values(
                upstream, store, request, folders, visible, structures, loaded.messages
            )
        self.get.loaded = loaded
        found = {
            i: (record, values.get(i, {}))
            for i, record in visible.items()
            if i not in loaded.vanished
        }
        return Batch(state, found)


def _render_weight(args: EmailGetArgs, loaded: Loaded, found: list[str]) -> int:
    """What rendering the emails costs, in the octets gateway.offload.sized counts: the
    header blocks its header properties parse, and the parts of the trees with their fields
    (what their ``headers`` and ``header:`` properties read)."""
    weight = 0
    headers = _needs_headers(args)
    for email_id in found:
        if headers:
            weight += parse_cost(loaded.header_block(email_id))
        root = loaded.structure.get(email_id)
        if root is not None:
            weight += render_cost(root)
    return weight


def _emails(
    emails: list[tuple[EmailRecord, dict[str, EmailBodyValue]]], args: EmailGetArgs, loaded: Loaded
) -> list[dict[str, Any]]:
    headers = _needs_headers(args)
    return [_email(record, args, loaded, values, headers) for record, values in emails]


def _email(
    record: EmailRecord,
    args: EmailGetArgs,
    loaded: Loaded,
    values: dict[str, EmailBodyValue],
    needs_headers: bool,
) -> dict[str, Any]:
    email_id = record.id
    headers = parse_header_block(loaded.header_block(email_id)) if needs_headers else []
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


# RFC 8621 4.1.1: what the index knows of a stored email, read off its record.
_METADATA: dict[str, Callable[[EmailRecord], Any]] = {
    row.name: row.read for row in PROPERTIES if row.read is not None
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
