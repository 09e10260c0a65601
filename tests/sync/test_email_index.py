"""The email sync on its own: QRESYNC and the plain fallback agree, pages, re-indexing."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

import gateway.sync.emails as email_sync
from gateway.cache.changes import CannotCalculateChanges
from gateway.cache.emails import EMAIL, EmailRecord, EmailStore, FolderMark, encode_mark
from gateway.cache.mailboxes import MailboxStore
from gateway.cache.store import Store
from gateway.imap.connection import ImapConnection
from gateway.sync.emails import sync_emails
from gateway.sync.mailboxes import sync_mailboxes
from tests.imap.upstream import logged_in
from tests.servers import Dovecot
from tests.translators.witness import Witness


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(redis_url)
    yield store
    await store.close()


async def synced(store: Store, conn: ImapConnection, account: str) -> dict[str, EmailRecord]:
    """Run the mailbox and email syncs for ``account`` and return every email record."""
    mailboxes = MailboxStore(store.client, account)
    await sync_mailboxes(mailboxes, conn)
    emails = EmailStore(store.client, account)
    await sync_emails(emails, conn, mailboxes)
    return await emails.records(await emails.all_ids())


def shape(records: dict[str, EmailRecord]) -> dict[str, tuple[object, ...]]:
    """What must agree between two indexes of the same mailbox."""
    return {
        i: (r.thread_id, r.size, r.received_at, {m: sorted(u) for m, u in r.copies.items()})
        for i, r in records.items()
    }


async def test_qresync_and_the_plain_fallback_agree(dovecot: Dovecot, store: Store) -> None:
    user = dovecot.fresh_user()
    with Witness(dovecot, user) as witness:
        witness.create("Work")
        for subject in ("one", "two", "three", "four"):
            witness.append("INBOX", subject)
    qresync = await logged_in(dovecot, user)
    await qresync.enable("QRESYNC")
    plain = await logged_in(dovecot, user)
    fast, slow = "a" + secrets.token_hex(4), "a" + secrets.token_hex(4)
    assert shape(await synced(store, qresync, fast)) == shape(await synced(store, plain, slow))

    with Witness(dovecot, user) as witness:
        imap = witness.imap
        witness.ok(imap.select("INBOX"))
        witness.ok(imap.store("1", "+FLAGS", "(\\Seen $label1)"))
        witness.ok(imap.copy("2", "Work"))
        witness.ok(imap.store("3", "+FLAGS", "(\\Deleted)"))
        witness.ok(imap.expunge())
        witness.append("INBOX", "five")
    sent = qresync.commands_sent
    after_fast = await synced(store, qresync, fast)
    # LIST; then INBOX and Work: EXAMINE (QRESYNC) with the changes, UID SEARCH for new UIDs,
    # one FETCH for INBOX's new message and one for Work's copy.
    assert qresync.commands_sent - sent <= 8
    after_slow = await synced(store, plain, slow)
    assert shape(after_fast) == shape(after_slow)
    assert len(after_fast) == 4  # "three" is gone, "five" is new, the copy is the same email
    flags = sorted(sorted(r.flags) for r in after_fast.values())
    assert ["$label1", "\\seen"] in flags
    assert sorted(len(r.copies) for r in after_fast.values()) == [1, 1, 1, 2]
    await qresync.logout()
    await plain.logout()


async def test_first_sync_fetches_new_messages_in_pages(
    dovecot: Dovecot, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(email_sync, "PAGE", 4)
    user = dovecot.fresh_user()
    with Witness(dovecot, user) as witness:
        for index in range(10):
            witness.append("INBOX", f"message {index}")
    conn = await logged_in(dovecot, user)
    await conn.enable("QRESYNC")
    account = "a" + secrets.token_hex(4)
    mailboxes = MailboxStore(store.client, account)
    await sync_mailboxes(mailboxes, conn)
    emails = EmailStore(store.client, account)
    fetches: list[str] = []
    execute = conn.execute

    async def counting(command, **kwargs):  # type: ignore[no-untyped-def]
        if command.name == "UID" and "FETCH" in str(command.args[:1]):
            fetches.append(str(command.args[1]))
        return await execute(command, **kwargs)

    monkeypatch.setattr(conn, "execute", counting)
    await sync_emails(emails, conn, mailboxes)
    assert fetches == ["1:4", "5:8", "9:10"]
    assert len(await emails.all_ids()) == 10
    # The first indexing logs no per-id changes: a state from before it cannot be a base.
    assert await emails.indexed()
    with pytest.raises(CannotCalculateChanges):
        await emails.state.changes(EMAIL, f"{(await emails.state.epoch())}-0", None)
    await conn.logout()


async def test_a_changed_uidvalidity_reindexes_without_spurious_changes(
    dovecot: Dovecot, store: Store
) -> None:
    user = dovecot.fresh_user()
    with Witness(dovecot, user) as witness:
        for subject in ("one", "two"):
            witness.append("INBOX", subject)
    conn = await logged_in(dovecot, user)
    await conn.enable("QRESYNC")
    account = "a" + secrets.token_hex(4)
    before = await synced(store, conn, account)
    emails = EmailStore(store.client, account)
    state = await emails.state.state(EMAIL)
    # Make the index believe INBOX had another UIDVALIDITY: the next sync starts it over.
    marks = await emails.marks()
    (inbox_id,) = [m for m in marks if before[next(iter(before))].copies.get(m)]
    old = marks[inbox_id]
    stale = FolderMark(old.uidvalidity + 1, old.modseq, old.uidnext, (None, None, -1))
    await store.client.hset(emails.keys.folder_marks, inbox_id, encode_mark(stale))
    after = await synced(store, conn, account)
    assert shape(after) == shape(before)
    assert await emails.state.state(EMAIL) == state
    assert (await emails.marks())[inbox_id].uidvalidity == old.uidvalidity
    await conn.logout()


async def test_writes_commit_only_while_the_sync_lease_is_held(store: Store) -> None:
    from gateway.cache.locks import LeaseLost, lease
    from gateway.sync.index_writer import IndexWriter, NewCopy

    account = "a" + secrets.token_hex(4)
    emails = EmailStore(store.client, account)
    key = emails.keys.lock("emails")
    async with lease(store.client, key, ttl=60, wait=1) as held:
        writer = IndexWriter(emails, held)
        await writer.add_copies("m1", [NewCopy(1, "e1", [], 0, 10, "t1")])
        assert list(await emails.records(["e1"])) == ["e1"]
        # The lease expired and another process took it: nothing more is written.
        await store.client.set(key, "someone-else")
        with pytest.raises(LeaseLost):
            await writer.add_copies("m1", [NewCopy(2, "e2", [], 0, 10, "t2")])
        assert await emails.records(["e2"]) == {}
