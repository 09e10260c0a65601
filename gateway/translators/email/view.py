"""The account's emails as one request sees them: folders and messages synced once."""

from __future__ import annotations

from gateway.cache.emails import EmailStore
from gateway.env import RequestEnv
from gateway.imap.connection import ImapConnection
from gateway.translators.mailbox.view import MailboxView, current_view

SYNCED = "emails-synced"


def email_store(env: RequestEnv) -> EmailStore:
    return EmailStore(env.services.store.client, env.principal.account_id)


async def synced_view(
    env: RequestEnv, conn: ImapConnection, *, fresh: bool = False
) -> tuple[MailboxView, EmailStore]:
    """Catch up folders and messages (once per request unless ``fresh``)."""
    view = await current_view(env, conn, fresh=fresh)
    store = email_store(env)
    if fresh or SYNCED not in env.memo:
        await env.services.email_sync.sync(store, conn, view.records, fresh=fresh)
        env.memo[SYNCED] = True
    return view, store
