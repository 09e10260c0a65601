"""Identity/get and Identity/changes (RFC 8621 6.2, RFC 8620 5.1, 5.2)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.cache.identities import IDENTITY, IdentityRecord
from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext
from gateway.jmap.standard import parse_changes
from gateway.translators.getting import Batch, standard_get
from gateway.translators.identity.lookup import with_default
from gateway.translators.identity.properties import PROPERTIES, render
from gateway.translators.identity.stored import stored
from gateway.translators.responses import changes_response


async def identity_get(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    return await standard_get(ctx, arguments, PROPERTIES, _IdentityGet(ctx.env))


class _IdentityGet:
    noun = "identities"

    def __init__(self, env: RequestEnv) -> None:
        self.env = env

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[_Identities]:
        snapshot = await stored(self.env)
        yield _Identities(snapshot.state, with_default(self.env, snapshot.records))

    async def render(
        self, records: list[IdentityRecord], properties: list[str]
    ) -> list[dict[str, Any]]:
        return [render(record, properties) for record in records]


class _Identities:
    def __init__(self, state: str, records: dict[str, IdentityRecord]) -> None:
        self.state = state
        self.objects = records

    async def count(self) -> int:
        return len(self.objects)

    async def all_ids(self) -> list[str]:
        return list(self.objects)

    async def records(self, ids: list[str]) -> Batch[IdentityRecord]:
        return Batch(self.state, self.objects)


async def identity_changes(
    ctx: CallContext[RequestEnv], arguments: dict[str, Any]
) -> dict[str, Any]:
    args = parse_changes(arguments)
    changes = await ctx.env.index.identities.state.changes(
        IDENTITY, args.since_state, args.max_changes
    )
    return changes_response(args.account_id, changes)
