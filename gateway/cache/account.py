"""One account's index as a whole: the stores a catch-up brings up to date and readers read."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.cache.emails import EmailStore
from gateway.cache.freshness import Freshness
from gateway.cache.identities import IdentityStore
from gateway.cache.mailboxes import MailboxStore
from gateway.cache.submissions import SubmissionStore


@dataclass(frozen=True)
class AccountIndex:
    account_id: str
    mailboxes: MailboxStore
    emails: EmailStore
    freshness: Freshness
    submissions: SubmissionStore
    identities: IdentityStore

    @classmethod
    def of(
        cls,
        client: Redis | RedisCluster,
        account_id: str,
        submission_retention: float | None = None,
    ) -> AccountIndex:
        """``submission_retention``: GATEWAY_SUBMISSION_RETENTION_SECONDS, where the caller
        has the settings (without it finished submissions are kept: see SubmissionStore)."""
        return cls(
            account_id,
            MailboxStore(client, account_id),
            EmailStore(client, account_id),
            Freshness(client, account_id),
            SubmissionStore.of(client, account_id, submission_retention),
            IdentityStore(client, account_id),
        )
