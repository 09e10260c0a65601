"""Email ids, Email/changes, Thread/get and Thread/changes after changes made by a plain IMAP
client, against Dovecot (X-GUID ids, the gateway's threads) and Cyrus (EMAILID/THREADID)."""

from __future__ import annotations

import imaplib
from typing import Any

from tests.jmapclient import Jmap
from tests.mailcorpus import THREADS
from tests.translators.upstreams import Upstream, append, imap, ok, uid_of, upstream

__all__ = ["imap", "upstream"]  # fixtures


async def emails(jmap: Jmap, *properties: str) -> dict[str, dict[str, Any]]:
    """Every email by its corpus key."""
    listed = await jmap.call(
        "Email/get", ids=None, properties=["header:X-Corpus-Key:asText", *properties]
    )
    return {e["header:X-Corpus-Key:asText"].strip(): e for e in listed["list"]}


async def state(jmap: Jmap, data_type: str) -> str:
    return str((await jmap.call(f"{data_type}/get", ids=[]))["state"])


async def changes(jmap: Jmap, data_type: str, since: str) -> dict[str, Any]:
    return await jmap.call(f"{data_type}/changes", sinceState=since)


async def folder_ids(jmap: Jmap) -> dict[str, str]:
    """Mailbox ids by IMAP path; the inbox under "INBOX" whatever its JMAP name."""
    mailboxes = await jmap.mailboxes()
    ids = {path: m["id"] for path, m in mailboxes.items()}
    ids["INBOX"] = next(m["id"] for m in mailboxes.values() if m["role"] == "inbox")
    return ids


async def test_every_appended_message_is_one_email_with_its_metadata(
    upstream: Upstream, imap: imaplib.IMAP4
) -> None:
    for key in ("plain_7bit", "alternative", "latin1"):
        append(imap, "INBOX", key, "\\Seen \\Flagged work")
    inbox = (await folder_ids(upstream.jmap))["INBOX"]
    found = await emails(upstream.jmap, "mailboxIds", "keywords", "size", "receivedAt")
    assert set(found) == {"plain_7bit", "alternative", "latin1"}
    for key, email in found.items():
        uid = uid_of(imap, "INBOX", key)
        raw = ok(imap.uid("FETCH", uid, "(RFC822.SIZE)"))[0].decode()
        assert email["size"] == int(raw.split("RFC822.SIZE ")[1].rstrip(")"))
        assert email["mailboxIds"] == {inbox: True}
        assert email["keywords"] == {"$seen": True, "$flagged": True, "work": True}
    # INTERNALDATE "10-Mar-2024 ..." style dates: receivedAt is the same instant in UTC.
    assert all(e["receivedAt"].endswith("Z") for e in found.values())


async def test_move_copy_flags_and_expunge_are_updates_and_destroys(
    upstream: Upstream, imap: imaplib.IMAP4
) -> None:
    jmap = upstream.jmap
    ok(imap.create("Work"))
    for key in ("plain_7bit", "alternative", "latin1"):
        append(imap, "INBOX", key)
    folders = await folder_ids(jmap)
    before = await emails(jmap, "mailboxIds", "threadId")
    email_state = await state(jmap, "Email")
    mailbox_state = await state(jmap, "Mailbox")

    moved = uid_of(imap, "INBOX", "plain_7bit")
    ok(imap.uid("MOVE", moved, "Work"))
    copied = uid_of(imap, "INBOX", "alternative")
    ok(imap.uid("COPY", copied, "Work"))
    flagged = uid_of(imap, "INBOX", "latin1")
    ok(imap.uid("STORE", flagged, "+FLAGS", "(\\Answered)"))

    after = await emails(jmap, "mailboxIds", "keywords", "threadId")
    # The same ids: a move and a copy keep the Email (RFC 8621 4), and its thread.
    assert {k: e["id"] for k, e in after.items()} == {k: e["id"] for k, e in before.items()}
    assert {k: e["threadId"] for k, e in after.items()} == {
        k: e["threadId"] for k, e in before.items()
    }
    assert after["plain_7bit"]["mailboxIds"] == {folders["Work"]: True}
    assert after["alternative"]["mailboxIds"] == {folders["INBOX"]: True, folders["Work"]: True}
    assert after["latin1"]["keywords"] == {"$answered": True}
    changed = await changes(jmap, "Email", email_state)
    assert changed["created"] == [] and changed["destroyed"] == []
    assert sorted(changed["updated"]) == sorted(e["id"] for e in before.values())
    mailbox_changes = await changes(jmap, "Mailbox", mailbox_state)
    assert set(mailbox_changes["updated"]) == {folders["INBOX"], folders["Work"]}

    email_state = changed["newState"]
    thread_state = await state(jmap, "Thread")
    ok(imap.select("Work"))
    ok(imap.uid("STORE", uid_of(imap, "Work", "plain_7bit"), "+FLAGS", "(\\Deleted)"))
    ok(imap.expunge())
    ok(imap.select("INBOX"))
    ok(imap.uid("STORE", uid_of(imap, "INBOX", "alternative"), "+FLAGS", "(\\Deleted)"))
    ok(imap.expunge())
    changed = await changes(jmap, "Email", email_state)
    # The last copy of plain_7bit is gone; alternative lost one of its two copies.
    assert changed["destroyed"] == [before["plain_7bit"]["id"]]
    assert changed["updated"] == [before["alternative"]["id"]]
    threads = await changes(jmap, "Thread", thread_state)
    assert threads["destroyed"] == [before["plain_7bit"]["threadId"]]
    gone = await jmap.call("Email/get", ids=[before["plain_7bit"]["id"]], properties=["id"])
    assert gone["notFound"] == [before["plain_7bit"]["id"]]


async def test_deleted_flag_hides_the_email_and_clearing_it_brings_it_back(
    upstream: Upstream, imap: imaplib.IMAP4
) -> None:
    jmap = upstream.jmap
    append(imap, "INBOX", "plain_7bit")
    email_id = (await emails(jmap))["plain_7bit"]["id"]
    email_state = await state(jmap, "Email")
    uid = uid_of(imap, "INBOX", "plain_7bit")
    ok(imap.uid("STORE", uid, "+FLAGS", "(\\Deleted)"))
    hidden = await changes(jmap, "Email", email_state)
    assert hidden["destroyed"] == [email_id]
    assert await emails(jmap) == {}
    ok(imap.uid("STORE", uid, "-FLAGS", "(\\Deleted)"))
    shown = await changes(jmap, "Email", hidden["newState"])
    assert shown["created"] == [email_id]


async def test_new_mail_is_created_and_paging_reports_intermediate_states(
    upstream: Upstream, imap: imaplib.IMAP4
) -> None:
    jmap = upstream.jmap
    email_state = await state(jmap, "Email")
    keys = ["plain_7bit", "alternative", "latin1", "cp1252", "koi8r"]
    for key in keys:
        append(imap, "INBOX", key)
    ids = {k: e["id"] for k, e in (await emails(jmap)).items()}
    seen: list[str] = []
    since = email_state
    while True:
        page = await jmap.call("Email/changes", sinceState=since, maxChanges=2)
        assert len(page["created"]) <= 2 and not page["updated"] and not page["destroyed"]
        seen += page["created"]
        since = page["newState"]
        if not page["hasMoreChanges"]:
            break
    assert sorted(seen) == sorted(ids.values())


async def test_threads_of_a_conversation(upstream: Upstream, imap: imaplib.IMAP4) -> None:
    """Linked messages with matching subjects share a thread; a reply that changes the
    subject and an unrelated message with the same subject do not (tests.mailcorpus)."""
    jmap = upstream.jmap
    imap.create("Sent")  # may exist already (autocreated); either way it exists after
    order = [key for thread in THREADS for key in thread]
    for index, key in enumerate(order):
        # The conversation spread over two folders, and a reply arriving before its parent.
        append(imap, "Sent" if index % 2 else "INBOX", key)
    found = await emails(jmap, "threadId", "receivedAt")
    thread_of = {key: found[key]["threadId"] for key in order}
    groups = [{thread_of[key] for key in thread} for thread in THREADS]
    assert all(len(group) == 1 for group in groups), groups
    assert len(set().union(*groups)) == len(THREADS)

    conversation = THREADS[0]
    listed = await jmap.call("Thread/get", ids=[thread_of[conversation[0]]])
    (thread,) = listed["list"]
    expected = sorted(conversation, key=lambda k: (found[k]["receivedAt"], found[k]["id"]))
    # RFC 8621 3: emailIds oldest first by receivedAt.
    assert [found[k]["receivedAt"] for k in expected] == sorted(
        found[k]["receivedAt"] for k in conversation
    )
    assert thread["emailIds"] == [found[k]["id"] for k in expected]


async def test_thread_changes_follow_membership(upstream: Upstream, imap: imaplib.IMAP4) -> None:
    jmap = upstream.jmap
    first, second = THREADS[0][0], THREADS[0][1]
    append(imap, "INBOX", first)
    thread_id = (await emails(jmap, "threadId"))[first]["threadId"]
    thread_state = await state(jmap, "Thread")
    append(imap, "INBOX", second)
    grown = await changes(jmap, "Thread", thread_state)
    assert grown["updated"] == [thread_id] and grown["created"] == []
    listed = await jmap.call("Thread/get", ids=[thread_id, "nothere"])
    assert len(listed["list"][0]["emailIds"]) == 2
    assert listed["notFound"] == ["nothere"]
    stale = await jmap.request(("Thread/changes", {"sinceState": "wrong-1"}))
    assert stale[0][0] == "error" and stale[0][1]["type"] == "cannotCalculateChanges"


async def test_ids_survive_a_restart_and_are_shared_by_a_second_gateway(
    upstream: Upstream, imap: imaplib.IMAP4, redis_url: str
) -> None:
    """The index is in Redis: another gateway process sees the same ids and states."""
    import httpx

    from tests.conftest import gateway_settings, running_gateway

    append(imap, "INBOX", "plain_7bit")
    first = await emails(upstream.jmap, "threadId")
    settings = gateway_settings(upstream.server.url, redis_url)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        other = await Jmap(http, upstream.user, upstream.server.users[upstream.user]).start()
        assert await emails(other, "threadId") == first
        assert await state(other, "Email") == await state(upstream.jmap, "Email")


async def test_unknown_states_cannot_be_calculated(upstream: Upstream) -> None:
    for since in ("nonsense", "0-0", (await state(upstream.jmap, "Email")) + "9"):
        answer = await upstream.jmap.request(("Email/changes", {"sinceState": since}))
        assert answer[0][1]["type"] == "cannotCalculateChanges", since
