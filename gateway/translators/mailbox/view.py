"""The account's mailboxes as one request sees them: synced once, read as one snapshot.

The sync covers messages too: Mailbox counts come from the email index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.cache.emails import EmailStore
from gateway.cache.mailboxes import MailboxRecord, MailboxStore
from gateway.env import RequestEnv
from gateway.imap.connection import ImapConnection
from gateway.translators.mailbox.objects import to_object

SYNCED = "mailboxes-synced"
# Set when this request asked the upstream itself (not trusting the interval).
ASKED = "upstream-asked"


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


def mailbox_store(env: RequestEnv) -> MailboxStore:
    return MailboxStore(env.services.store.client, env.principal.account_id)


def email_store(env: RequestEnv) -> EmailStore:
    return EmailStore(env.services.store.client, env.principal.account_id)


async def current_view(
    env: RequestEnv, conn: ImapConnection, *, fresh: bool = False
) -> MailboxView:
    """Catch up folders and messages with the upstream (once per request unless ``fresh``)
    and read the index.

    Within GATEWAY_SYNC_INTERVAL_SECONDS of the account's last catch-up (by any replica),
    the index is trusted as it is: a burst of requests costs one upstream check, not one
    each, and a warm request costs no upstream round trip. ``fresh`` always asks."""
    store = mailbox_store(env)
    if fresh or SYNCED not in env.memo:
        interval = env.services.settings.sync_interval_seconds
        client = env.services.store.client
        if fresh or not interval or not await client.exists(store.keys.caught_up):
            await env.services.mailbox_sync.sync(store, conn, fresh=fresh)
            await env.services.email_sync.sync(email_store(env), conn, store, fresh=fresh)
            env.memo[ASKED] = True
            if interval:
                await client.set(store.keys.caught_up, "1", px=int(interval * 1000))
        env.memo[SYNCED] = True
    records, state, sort_orders, counts = await store.snapshot()
    return MailboxView(store, records, state, sort_orders, counts)
