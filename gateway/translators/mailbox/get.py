"""Mailbox/get and Mailbox/changes (RFC 8621 2.1, 2.2)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.cache.mailboxes import MAILBOX
from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext
from gateway.jmap.standard import parse_changes
from gateway.translators.getting import Batch, project, standard_get
from gateway.translators.mailbox.objects import COUNT_PROPERTIES, PROPERTIES
from gateway.translators.mailbox.view import mailbox_view
from gateway.translators.responses import changes_response


async def mailbox_get(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    return await standard_get(ctx, arguments, PROPERTIES, _MailboxGet(ctx.env))


class _MailboxGet:
    """Every mailbox of the current view; a /get may always return all of them."""

    noun = "mailboxes"

    def __init__(self, env: RequestEnv) -> None:
        self.env = env

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[_Mailboxes]:
        view = await mailbox_view(self.env)
        yield _Mailboxes(view.state, view.objects())

    async def render(
        self, records: list[dict[str, Any]], properties: list[str]
    ) -> list[dict[str, Any]]:
        return project(records, properties)


class _Mailboxes:
    def __init__(self, state: str, objects: dict[str, dict[str, Any]]) -> None:
        self.state = state
        self.objects = objects

    async def count(self) -> None:
        return None

    async def all_ids(self) -> list[str]:
        return list(self.objects)

    async def records(self, ids: list[str]) -> Batch[dict[str, Any]]:
        return Batch(self.state, self.objects)


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
