"""The catch-up service on its own, with no request: what a push watcher will call.

It takes the account's stores and a way to borrow a connection; the index it leaves agrees
with what a plain IMAP client sees, and within the interval it trusts the index.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from gateway.cache.account import AccountIndex
from gateway.cache.store import Store
from gateway.config import Settings
from gateway.credentials import Credentials
from gateway.imap.pool import ImapPool
from gateway.sync.catch_up import CatchUp
from gateway.upstream import imap_pool
from tests.servers import Dovecot
from tests.translators.witness import Witness


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(redis_url)
    yield store
    await store.close()


@pytest.fixture
async def pool(dovecot: Dovecot, redis_url: str) -> AsyncIterator[ImapPool]:
    pool = imap_pool(Settings(imap_url=dovecot.url, redis_url=redis_url))
    yield pool
    await pool.close()


async def per_folder(index: AccountIndex, witness: Witness) -> dict[str, int]:
    """Emails per folder as the index holds them, beside the witness's own counts."""
    records = await index.emails.records(await index.emails.all_ids())
    folders = {m.id: m.name for m in (await index.mailboxes.load()).values()}
    held: dict[str, int] = {}
    for record in records.values():
        for mailbox_id in record.mailbox_ids:
            held[folders[mailbox_id]] = held.get(folders[mailbox_id], 0) + 1
    assert held == {
        name: count for name in folders.values() if (count := witness.status(name)["MESSAGES"])
    }
    return held


async def test_catch_up_without_a_request(dovecot: Dovecot, store: Store, pool: ImapPool) -> None:
    user = dovecot.fresh_user()
    login = await pool.login(Credentials(user, dovecot.users[user]))
    index = AccountIndex.of(store.client, "a" + secrets.token_hex(4))
    catch_up = CatchUp(interval=600)
    with Witness(dovecot, user) as witness:
        witness.create("Work")
        witness.append("INBOX", "one")
        witness.append("Work", "two")

        assert await catch_up.run(index, lambda: pool.connection(login))
        assert await per_folder(index, witness) == {"INBOX": 1, "Work": 1}

        witness.append("Work", "three")
        sent = pool.stats().commands
        # Within the interval the index is trusted: nothing asked, the new message unseen.
        assert not await catch_up.run(index, lambda: pool.connection(login))
        assert pool.stats().commands == sent
        assert (await index.emails.count()) == 2
        # A watcher told that something moved asks anyway.
        assert await catch_up.run(index, lambda: pool.connection(login), fresh=True)
        assert await per_folder(index, witness) == {"INBOX": 1, "Work": 2}
        # Its run borrowed a connection and gave it back.
        assert pool.stats().idle == pool.stats().total
