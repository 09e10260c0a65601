"""Every thread answer of a seeded account agrees with threads worked out from the messages.

The messages are read back over plain IMAP (imaplib) and parsed by tests.mailtruth (the
standard library, no gateway code); threads are grouped here by the rule the README states
(a message joins the thread of a Message-ID it names, or that names it, when their
normalised subjects agree), then compared with what the gateway answers: Email/get's
threadId, Thread/get's members (oldest first), each folder's totalThreads and unreadThreads,
collapsed Email/query per folder, and Thread/changes after the mailbox changed.
"""

from __future__ import annotations

import imaplib
import re
import time
from dataclasses import dataclass
from typing import Any

from tests.jmapclient import Jmap
from tests.mailtruth import expected
from tests.servers import Dovecot

FOLDERS = ("INBOX", "Archive")


def message(key: str, subject: str, *, parents: tuple[str, ...] = (), own: bool = True) -> bytes:
    """A message with X-Key ``key``, its Message-ID <key@example.org> unless not ``own``,
    In-Reply-To the last of ``parents`` and References all of them."""
    lines = [f"X-Key: {key}", "From: a@example.org", f"Subject: {subject}"]
    if own:
        lines.append(f"Message-ID: <{key}@example.org>")
    if parents:
        lines.append(f"In-Reply-To: <{parents[-1]}@example.org>")
        lines.append("References: " + " ".join(f"<{p}@example.org>" for p in parents))
    return ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode()


# (folder, key, subject, parents, seen, hour, own Message-ID): conversations across both
# folders; a reply with another subject (a new thread); a reply filed before its parent;
# two messages answering one that is not there; a message without a Message-ID.
SEED = (
    ("INBOX", "a1", "Plans", (), True, 1, True),
    ("INBOX", "a2", "Re: Plans", ("a1",), False, 2, True),
    ("Archive", "a3", "RE: plans", ("a1", "a2"), True, 3, True),
    ("Archive", "b1", "Budget", (), True, 4, True),
    ("INBOX", "b2", "Re: Budget", ("b1",), True, 5, True),
    ("INBOX", "c1", "Lunch", ("a2",), False, 6, True),
    ("INBOX", "e2", "Re: Trip", ("e1",), True, 8, True),
    ("INBOX", "e1", "Trip", (), True, 7, True),
    ("Archive", "f1", "Re: Gone", ("gone",), False, 9, True),
    ("INBOX", "f2", "Fwd: Re: Gone", ("gone",), True, 10, True),
    ("INBOX", "d1", "Solo", (), False, 11, False),
)


@dataclass
class Held:
    """One email as the IMAP server holds it (copies by folder share its key)."""

    key: str
    folders: set[str]
    seen: bool
    received: float
    subject: str
    message_id: str | None
    parents: list[str]


def normalised(subject: str | None) -> str:
    """RFC 5256 base subject, as far as these subjects need: reply and forward prefixes
    off, case folded."""
    text = (subject or "").strip()
    while True:
        stripped = re.sub(r"^(re|fwd?)\s*:\s*", "", text, flags=re.IGNORECASE)
        if stripped == text:
            return text.casefold()
        text = stripped


def held(imap: imaplib.IMAP4) -> dict[str, Held]:
    """Every email of the account by key, read over plain IMAP."""
    found: dict[str, Held] = {}
    for folder in FOLDERS:
        assert imap.select(folder)[0] == "OK"
        typ, data = imap.uid("FETCH", "1:*", "(FLAGS INTERNALDATE BODY.PEEK[HEADER])")
        assert typ == "OK"
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta, raw = item[0].decode(), item[1]
            truth = expected(raw)
            key = re.search(rb"X-Key: (\S+)", raw)
            assert key is not None
            received = imaplib.Internaldate2tuple(meta.encode())
            assert received is not None
            email = found.setdefault(
                key.group(1).decode(),
                Held(
                    key.group(1).decode(),
                    set(),
                    "\\Seen" in meta,
                    time.mktime(received),
                    normalised(truth["subject"]),
                    (truth["messageId"] or [None])[0],
                    [*(truth["inReplyTo"] or []), *(truth["references"] or [])],
                ),
            )
            email.folders.add(folder)
    return found


def grouped(emails: dict[str, Held]) -> dict[str, str]:
    """Key -> a name of its thread: messages joined through the Message-IDs they name
    (present or not) when their subjects agree (every message naming one id here has the
    same subject as the others naming it)."""
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        while parent.get(node, node) != node:
            node = parent[node]
        return node

    subjects: dict[str, str] = {}
    for email in emails.values():
        if email.message_id:
            subjects[email.message_id] = email.subject
    for email in emails.values():
        node = email.message_id or f"key:{email.key}"
        for named in email.parents:
            if subjects.setdefault(named, email.subject) == email.subject:
                parent[root(node)] = root(named)
    return {key: root(e.message_id or f"key:{key}") for key, e in emails.items()}


def truth(emails: dict[str, Held]) -> dict[str, Any]:
    """Every thread answer, with threads named by their members' keys."""
    threads = grouped(emails)
    members: dict[str, list[str]] = {}
    for key in sorted(emails, key=lambda k: emails[k].received):
        members.setdefault(threads[key], []).append(key)
    unread = {t for t, keys in members.items() if any(not emails[k].seen for k in keys)}
    folders: dict[str, Any] = {}
    for folder in FOLDERS:
        inside = sorted(
            (k for k, e in emails.items() if folder in e.folders),
            key=lambda k: -emails[k].received,
        )
        shown = {threads[k] for k in inside}
        heads: list[str] = []
        for key in inside:
            if all(threads[h] != threads[key] for h in heads):
                heads.append(key)
        folders[folder] = {
            "totalThreads": len(shown),
            "unreadThreads": len(shown & unread),
            "collapsed": heads,
        }
    return {
        "threads": sorted(sorted(keys) for keys in members.values()),
        "ordered": {keys[0]: keys for keys in members.values()},
        "folders": folders,
    }


async def answers(jmap: Jmap) -> tuple[dict[str, Any], dict[str, str]]:
    """The same answers from the gateway, threads named by keys; and key -> thread id."""
    listed = await jmap.call("Email/get", ids=None, properties=["threadId", "header:X-Key:asText"])
    thread_of = {e["header:X-Key:asText"].strip(): e["threadId"] for e in listed["list"]}
    key_of = {e["id"]: e["header:X-Key:asText"].strip() for e in listed["list"]}
    got = await jmap.call("Thread/get", ids=sorted(set(thread_of.values())))
    assert got["notFound"] == []
    ordered = {}
    for thread in got["list"]:
        keys = [key_of[i] for i in thread["emailIds"]]
        assert {thread_of[k] for k in keys} == {thread["id"]}
        ordered[keys[0]] = keys
    mailboxes = await jmap.call("Mailbox/get", ids=None)
    folders: dict[str, Any] = {}
    for mailbox in mailboxes["list"]:
        name = "INBOX" if mailbox["role"] == "inbox" else mailbox["name"]
        if name not in FOLDERS:
            continue
        query = await jmap.call(
            "Email/query",
            filter={"inMailbox": mailbox["id"]},
            sort=[{"property": "receivedAt", "isAscending": False}],
            collapseThreads=True,
            calculateTotal=True,
        )
        assert query["total"] == mailbox["totalThreads"]
        folders[name] = {
            "totalThreads": mailbox["totalThreads"],
            "unreadThreads": mailbox["unreadThreads"],
            "collapsed": [key_of[i] for i in query["ids"]],
        }
    return {
        "threads": sorted(sorted(keys) for keys in ordered.values()),
        "ordered": ordered,
        "folders": folders,
    }, thread_of


def append(imap: imaplib.IMAP4, folder: str, raw: bytes, seen: bool, hour: int) -> None:
    date = f'"02-Mar-2024 {hour:02d}:00:00 +0000"'
    assert imap.append(folder, "(\\Seen)" if seen else "()", date, raw)[0] == "OK"


def uid_of(imap: imaplib.IMAP4, folder: str, key: str) -> bytes:
    assert imap.select(folder)[0] == "OK"
    (line,) = imap.uid("SEARCH", "HEADER", "X-Key", key)[1]
    (uid,) = line.split()
    return bytes(uid)


async def test_every_thread_answer_matches_the_messages(dovecot: Dovecot, jmap: Jmap) -> None:
    imap = dovecot.client(jmap.username)
    try:
        assert imap.create("Archive")[0] == "OK"
        for folder, key, subject, parents, seen, hour, own in SEED:
            append(imap, folder, message(key, subject, parents=parents, own=own), seen, hour)
        before = held(imap)
        expected_now = truth(before)
        # The rule's cases, as the seed meant them.
        assert ["a1", "a2", "a3"] in expected_now["threads"]
        assert ["c1"] in expected_now["threads"] and ["e1", "e2"] in expected_now["threads"]
        assert ["f1", "f2"] in expected_now["threads"]
        got, threads = await answers(jmap)
        assert got == expected_now
        state = (await jmap.call("Thread/get", ids=[]))["state"]

        # The mailbox changes under another client: a single-email thread goes, a read
        # reply, a move out of INBOX, a copy into Archive, a late reply joining.
        assert imap.select("INBOX")[0] == "OK"
        imap.uid("STORE", uid_of(imap, "INBOX", "d1"), "+FLAGS", "(\\Deleted)")
        imap.expunge()
        imap.uid("STORE", uid_of(imap, "INBOX", "a2"), "+FLAGS", "(\\Seen)")
        assert imap.uid("MOVE", uid_of(imap, "INBOX", "b2"), "Archive")[0] == "OK"
        assert imap.uid("COPY", uid_of(imap, "INBOX", "e1"), "Archive")[0] == "OK"
        append(imap, "INBOX", message("g1", "Re: Plans", parents=("a1", "a3")), False, 12)
        after = held(imap)
        assert after["e1"].folders == {"INBOX", "Archive"}
        got, now = await answers(jmap)
        assert got == truth(after)
        changes = await jmap.call("Thread/changes", sinceState=state)
        assert changes["created"] == []
        assert changes["destroyed"] == [threads["d1"]]
        assert threads["a1"] in changes["updated"]
        assert now["g1"] == threads["a1"]
        assert {k: now[k] for k in before if k != "d1"} == {
            k: t for k, t in threads.items() if k != "d1"
        }
    finally:
        imap.logout()
