"""The account's mailboxes as one request sees them: caught up, read as one snapshot.

The catch-up covers messages too: Mailbox counts come from the email index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.cache.mailboxes import MailboxRecord, MailboxStore
from gateway.env import RequestEnv
from gateway.translators.mailbox.objects import to_object


@dataclass(frozen=True)
class MailboxView:
    store: MailboxStore
    records: dict[str, MailboxRecord]
    state: str
    sort_orders: dict[str, int]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def object(self, record: MailboxRecord) -> dict[str, Any]:
        return to_object(record, self.records, self.sort_orders, self.counts.get(record.id, {}))

    def objects(self) -> dict[str, dict[str, Any]]:
        return {i: self.object(r) for i, r in self.records.items()}

    def children(self, mailbox_id: str) -> list[MailboxRecord]:
        return [r for r in self.records.values() if r.parent_id == mailbox_id]


async def mailbox_view(env: RequestEnv, *, fresh: bool = False) -> MailboxView:
    """The mailboxes after the request's catch-up (see RequestEnv.catch_up)."""
    await env.catch_up(fresh=fresh)
    store = env.index.mailboxes
    records, state, sort_orders, counts = await store.snapshot()
    return MailboxView(store, records, state, sort_orders, counts)
