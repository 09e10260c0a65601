"""Mailbox counts from the email index (RFC 8621 2): \\Deleted copies and unread drafts left
out, threads counted as threads, changes reported as count-only Mailbox updates."""

from __future__ import annotations

import imaplib
from typing import Any

from tests.jmapclient import Jmap
from tests.translators.upstreams import Upstream, append, imap, ok, uid_of, upstream

__all__ = ["imap", "upstream"]  # fixtures

COUNTS = ("totalEmails", "unreadEmails", "totalThreads", "unreadThreads")


async def counts(jmap: Jmap) -> dict[str, tuple[int, ...]]:
    """Counts by IMAP path, the inbox as "INBOX"."""
    found: dict[str, tuple[int, ...]] = {}
    for path, mailbox in (await jmap.mailboxes()).items():
        key = "INBOX" if mailbox["role"] == "inbox" else path
        found[key] = tuple(mailbox[c] for c in COUNTS)
    return found


async def test_counts_leave_out_deleted_and_drafts_and_count_threads(
    upstream: Upstream, imap: imaplib.IMAP4
) -> None:
    jmap = upstream.jmap
    ok(imap.create("Work"))
    # A conversation of two (one read, one not), a lone unread draft, a deleted message.
    append(imap, "INBOX", "conv_plans_1", "\\Seen")
    append(imap, "INBOX", "conv_plans_2")
    append(imap, "INBOX", "plain_7bit", "\\Draft")
    append(imap, "INBOX", "alternative", "\\Deleted")
    found = await counts(jmap)
    # 3 emails (the deleted one is not visible), 1 unread (drafts are not unread),
    # 2 threads, 1 with an unread email.
    assert found["INBOX"] == (3, 1, 2, 1)
    assert found["Work"] == (0, 0, 0, 0)

    mailbox_state = (await jmap.call("Mailbox/get", ids=[]))["state"]
    # The read half of the conversation is copied to Work: Work holds one email of a thread
    # whose other email (in INBOX) is unread, so the thread is unread in Work too (RFC 8621 2).
    ok(imap.select("INBOX"))
    ok(imap.uid("COPY", uid_of(imap, "INBOX", "conv_plans_1"), "Work"))
    found = await counts(jmap)
    assert found["Work"] == (1, 0, 1, 1)
    assert found["INBOX"] == (3, 1, 2, 1)
    changed = await jmap.call("Mailbox/changes", sinceState=mailbox_state)
    ids = {m["role"] or m["name"]: m["id"] for m in (await jmap.mailboxes()).values()}
    assert changed["updated"] == [ids["Work"]]
    assert changed["updatedProperties"] == list(COUNTS)

    # Reading the unread one makes both threads read everywhere.
    ok(imap.select("INBOX"))
    ok(imap.uid("STORE", uid_of(imap, "INBOX", "conv_plans_2"), "+FLAGS", "(\\Seen)"))
    found = await counts(jmap)
    assert found["INBOX"] == (3, 0, 2, 0)
    assert found["Work"] == (1, 0, 1, 0)

    # Expunging the deleted message changes nothing visible; clearing \Draft makes the lone
    # message unread.
    ok(imap.select("INBOX"))
    ok(imap.expunge())
    ok(imap.uid("STORE", uid_of(imap, "INBOX", "plain_7bit"), "-FLAGS", "(\\Draft)"))
    assert (await counts(jmap))["INBOX"] == (3, 1, 2, 1)


async def test_counts_follow_a_folder_deleted_upstream(
    upstream: Upstream, imap: imaplib.IMAP4
) -> None:
    jmap = upstream.jmap
    ok(imap.create("Gone"))
    append(imap, "Gone", "plain_7bit")
    append(imap, "INBOX", "plain_7bit")
    assert (await counts(jmap))["Gone"] == (1, 1, 1, 1)
    ok(imap.delete("Gone"))
    found = await counts(jmap)
    assert "Gone" not in found
    assert found["INBOX"] == (1, 1, 1, 1)
    emails: dict[str, Any] = await jmap.call("Email/get", ids=None, properties=["mailboxIds"])
    assert [len(e["mailboxIds"]) for e in emails["list"]] == [1]


async def test_a_folder_emptied_upstream_loses_its_emails(
    upstream: Upstream, imap: imaplib.IMAP4
) -> None:
    jmap = upstream.jmap
    append(imap, "INBOX", "plain_7bit")
    append(imap, "INBOX", "alternative")
    state = (await jmap.call("Email/get", ids=[]))["state"]
    assert (await counts(jmap))["INBOX"] == (2, 2, 2, 2)
    ok(imap.select("INBOX"))
    ok(imap.store("1:*", "+FLAGS", "(\\Deleted)"))
    ok(imap.expunge())
    assert (await counts(jmap))["INBOX"] == (0, 0, 0, 0)
    changed = await jmap.call("Email/changes", sinceState=state)
    assert len(changed["destroyed"]) == 2 and not changed["created"] and not changed["updated"]
