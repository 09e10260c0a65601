"""Listing folders: LIST-STATUS in one round trip, and the fallback for servers without it."""

from __future__ import annotations

from gateway.sync.mailboxes import IdStrategy, build_records, list_mailboxes
from tests.imap.upstream import logged_in
from tests.servers import Dovecot
from tests.translators.witness import Witness


async def test_fallback_lists_the_same_folders(dovecot: Dovecot) -> None:
    user = dovecot.fresh_user()
    with Witness(dovecot, user) as witness:
        witness.create("Projects/Alpha")
        witness.append("INBOX", "one", "\\Seen")
        witness.append("INBOX", "two")
    conn = await logged_in(dovecot, user)
    one = await list_mailboxes(conn, IdStrategy.X_GUID, None)
    sent = conn.commands_sent
    conn.capabilities = conn.capabilities - {"LIST-STATUS"}
    other = await list_mailboxes(conn, IdStrategy.X_GUID, None)
    assert conn.commands_sent - sent > 2  # LIST, LSUB and STATUS per folder
    assert one.folders is not None and other.folders is not None
    first = build_records(one.folders, IdStrategy.X_GUID, {})
    second = build_records(other.folders, IdStrategy.X_GUID, {})
    assert first == second
    inbox = next(r for r in first.values() if r.role == "inbox")
    assert (inbox.total, inbox.unread) == (2, 1)
    subscribed = {r.name: r.subscribed for r in first.values()}
    assert subscribed["Sent"] is True and subscribed["Projects/Alpha"] is False
    await conn.logout()


async def test_unchanged_listing_is_not_parsed(dovecot: Dovecot) -> None:
    user = dovecot.fresh_user()
    conn = await logged_in(dovecot, user)
    await list_mailboxes(conn, IdStrategy.X_GUID, None)  # Dovecot makes the special folders
    first = await list_mailboxes(conn, IdStrategy.X_GUID, None)
    again = await list_mailboxes(conn, IdStrategy.X_GUID, first.digest)
    assert again.digest == first.digest and again.folders is None
    with Witness(dovecot, user) as witness:
        witness.append("INBOX", "new")
    changed = await list_mailboxes(conn, IdStrategy.X_GUID, first.digest)
    assert changed.digest != first.digest and changed.folders is not None
    await conn.logout()


async def test_a_folder_without_status_keeps_its_record(dovecot: Dovecot) -> None:
    """RFC 5819: a server may leave out a folder's STATUS for a moment; the folder is not
    thereby gone (nor its mail)."""
    from dataclasses import replace

    user = dovecot.fresh_user()
    with Witness(dovecot, user) as witness:
        witness.create("Work")
        witness.append("Work", "one")
    conn = await logged_in(dovecot, user)
    listing = await list_mailboxes(conn, IdStrategy.X_GUID, None)
    assert listing.folders is not None
    before = build_records(listing.folders, IdStrategy.X_GUID, {})
    gapped = [replace(f, status=None) if f.entry.name == "Work" else f for f in listing.folders]
    after = build_records(gapped, IdStrategy.X_GUID, {}, previous=before)
    assert after == before
    # Without an earlier record, the folder is shown unselectable until STATUS answers.
    alone = build_records(gapped, IdStrategy.X_GUID, {})
    work = next(r for r in alone.values() if r.name == "Work")
    assert not work.selectable
    await conn.logout()
