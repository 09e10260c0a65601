"""EmailSubmission/get and EmailSubmission/changes (RFC 8621 7.1, 7.2).

Submissions live in the gateway's store alone (gateway.cache.submissions), but their
deliveryStatus follows the delivery reports that arrive as mail (gateway.sync.reports), so
both catch the account up first (within GATEWAY_SYNC_INTERVAL_SECONDS that trusts the index
and asks nothing). The store's reads first destroy what outlived the retention, so the state
answered already counts those destructions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.cache.submissions import EMAIL_SUBMISSION, SubmissionRecord, SubmissionStore
from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext
from gateway.jmap.standard import parse_changes
from gateway.translators.getting import Batch, standard_get
from gateway.translators.responses import changes_response
from gateway.translators.submission.objects import PROPERTIES, render


async def submission_get(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    return await standard_get(ctx, arguments, PROPERTIES, _SubmissionGet(ctx.env))


class _SubmissionGet:
    noun = "email submissions"

    def __init__(self, env: RequestEnv) -> None:
        self.env = env

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[_Submissions]:
        await self.env.catch_up()
        yield _Submissions(self.env.index.submissions)

    async def render(
        self, records: list[SubmissionRecord], properties: list[str]
    ) -> list[dict[str, Any]]:
        return [render(record, properties) for record in records]


class _Submissions:
    def __init__(self, store: SubmissionStore) -> None:
        self.store = store

    async def count(self) -> int:
        return await self.store.count()

    async def all_ids(self) -> list[str]:
        return await self.store.all_ids()

    async def records(self, ids: list[str]) -> Batch[SubmissionRecord]:
        records, state = await self.store.snapshot(ids)
        return Batch(state, records)


async def submission_changes(
    ctx: CallContext[RequestEnv], arguments: dict[str, Any]
) -> dict[str, Any]:
    args = parse_changes(arguments)
    await ctx.env.catch_up()
    store = ctx.env.index.submissions
    await store.expire()
    changes = await store.state_log.changes(EMAIL_SUBMISSION, args.since_state, args.max_changes)
    return changes_response(args.account_id, changes)
