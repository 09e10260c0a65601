"""The account's emails as one request sees them: folders and messages synced once."""

from __future__ import annotations

from gateway.cache.emails import EmailStore
from gateway.env import RequestEnv
from gateway.imap.connection import ImapConnection
from gateway.translators.mailbox.view import MailboxView, current_view, email_store

__all__ = ["email_store", "synced_view"]


async def synced_view(
    env: RequestEnv, conn: ImapConnection, *, fresh: bool = False
) -> tuple[MailboxView, EmailStore]:
    """Catch up folders and messages (once per request unless ``fresh``)."""
    return await current_view(env, conn, fresh=fresh), email_store(env)
