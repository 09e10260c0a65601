"""Thread/get and Thread/changes (RFC 8621 3)."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from gateway.cache.emails import THREAD, EmailStore
from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext
from gateway.jmap.properties import Property, PropertyTable
from gateway.translators.email.get import changes_since
from gateway.translators.getting import Batch, standard_get


class Source(enum.Enum):
    INDEX = "index"  # the email index's thread records


# RFC 8621 3: a Thread's properties, both server-set, both in the default set.
PROPERTIES: Final = PropertyTable(
    [
        Property("id", Source.INDEX, server_set=True, immutable=True, always=True),
        Property("emailIds", Source.INDEX, server_set=True),
    ],
    unknown="not Thread properties: {}",
)


async def thread_get(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    return await standard_get(ctx, arguments, PROPERTIES, _ThreadGet(ctx.env))


class _ThreadGet:
    """Threads from the email index, once caught up; "all" is bounded by maxObjectsInGet."""

    noun = "threads"

    def __init__(self, env: RequestEnv) -> None:
        self.env = env

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[_Threads]:
        await self.env.catch_up()
        yield _Threads(self.env.index.emails)

    async def render(
        self, records: list[tuple[str, list[str]]], properties: list[str]
    ) -> list[dict[str, Any]]:
        return [{p: (i if p == "id" else members) for p in properties} for i, members in records]


class _Threads:
    def __init__(self, store: EmailStore) -> None:
        self.store = store

    async def count(self) -> int:
        return await self.store.thread_count()

    async def all_ids(self) -> list[str]:
        return await self.store.thread_ids()

    async def records(self, ids: list[str]) -> Batch[tuple[str, list[str]]]:
        members, state = await self.store.thread_snapshot(ids)
        return Batch(state, {i: (i, emails) for i, emails in members.items()})


async def thread_changes(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    return await changes_since(ctx.env, arguments, THREAD)
