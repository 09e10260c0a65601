"""Mailbox methods against a real Cyrus IMAP 3.6, the upstream with OBJECTID (RFC 8474).

On Cyrus the gateway's Mailbox ids are Cyrus's own MAILBOXIDs, which survive renames made by any
client; roles come from Cyrus's special-use folders, rights from its ACLs (LIST-MYRIGHTS), and a
role can be given on create (CREATE-SPECIAL-USE). A plain stdlib client is the witness of what
Cyrus holds.

Cyrus 3.6.1 (Debian 12) answers ``MAILBOXID`` wrongly when it is asked together with an item it
reads from the mailbox's index (MESSAGES, UNSEEN, UIDNEXT, HIGHESTMODSEQ, SIZE) for a mailbox
that is not selected: the id's bytes are freed memory, e.g.
``* STATUS Drafts (MESSAGES 0 ... MAILBOXID (\x96\x1fD\x7f) ...)``, at times with a bare LF in
them. Asked alone, or with UIDVALIDITY only, it is right. The gateway asks for it in the one
LIST-STATUS of its sync, together with the counts, and so fails every Mailbox method on this
Cyrus. The checks that do not depend on ids also run with gateway-assigned ids, which keep
MAILBOXID out of the listing.
"""

from __future__ import annotations

import re

import pytest
import redis

from tests.cyrus import Cyrus
from tests.jmapclient import MAILBOX_RIGHTS, Jmap
from tests.translators.witness import Witness

RIGHTS = MAILBOX_RIGHTS
# RFC 8474 4: objectid = 1*255(ALPHA / DIGIT / "_" / "-")
OBJECTID = re.compile(rb"MAILBOXID \(([A-Za-z0-9_-]{1,255})\)")


@pytest.fixture(
    params=["objectid", "gateway"],
    ids=["cyrus-ids", "gateway-ids"],
)
def account(request: pytest.FixtureRequest, cyrus_jmap: Jmap, redis_url: str) -> Jmap:
    """The fresh Cyrus account with Cyrus's own ids, or with ids the gateway assigns."""
    if request.param == "gateway":
        client = redis.Redis.from_url(redis_url)
        client.hset(f"jg:{{{cyrus_jmap.account_id}}}:meta", "mailbox-ids", "gateway")
        client.close()
    return cyrus_jmap


def native_id(witness: Witness, raw_name: str) -> str:
    """Cyrus's MAILBOXID of a folder, asked alone: ``STATUS name (MAILBOXID)``."""
    (line,) = witness.ok(witness.imap.status(f'"{raw_name}"', "(MAILBOXID)"))
    assert isinstance(line, bytes), line
    match = OBJECTID.search(line)
    assert match, line
    return match[1].decode()


def imap_name(path: str) -> str:
    return "INBOX" if path == "Inbox" else path


async def state(jmap: Jmap) -> str:
    return str((await jmap.call("Mailbox/get", ids=[]))["state"])


async def test_ids_are_cyrus_mailboxids(cyrus_jmap: Jmap, cyrus: Cyrus, redis_url: str) -> None:
    with Witness(cyrus, cyrus_jmap.username) as witness:
        witness.create("Work")
        witness.create("Work/Projects")
    mailboxes = await cyrus_jmap.mailboxes()
    assert set(mailboxes) == {
        "Inbox",
        "Drafts",
        "Sent",
        "Trash",
        "Junk",
        "Archive",
        "Work",
        "Work/Projects",
    }
    with Witness(cyrus, cyrus_jmap.username) as witness:
        expected = {path: native_id(witness, imap_name(path)) for path in mailboxes}
    assert {path: box["id"] for path, box in mailboxes.items()} == expected
    assert mailboxes["Work/Projects"]["parentId"] == expected["Work"]
    client = redis.Redis.from_url(redis_url)
    try:
        strategy = client.hget(f"jg:{{{cyrus_jmap.account_id}}}:meta", "mailbox-ids")
    finally:
        client.close()
    assert strategy == b"objectid"


async def test_special_use_folders_get_their_roles(account: Jmap) -> None:
    mailboxes = await account.mailboxes()
    # Cyrus sends its autocreated folders' attributes in lower case ("\drafts").
    assert {path: box["role"] for path, box in mailboxes.items()} == {
        "Inbox": "inbox",
        "Drafts": "drafts",
        "Sent": "sent",
        "Trash": "trash",
        "Junk": "junk",
        "Archive": "archive",
    }
    assert all(box["isSubscribed"] for box in mailboxes.values())
    assert all(box["parentId"] is None for box in mailboxes.values())


async def test_counts_equal_what_status_says(account: Jmap, cyrus: Cyrus) -> None:
    with Witness(cyrus, account.username) as witness:
        witness.create("Lists")
        for i in range(5):
            witness.append("INBOX", f"m{i}", "\\Seen" if i % 2 else "")
        witness.append("Lists", "l1")
        witness.append("Lists", "l2", "\\Seen")
        expected = {name: witness.status(name) for name in ("INBOX", "Lists", "Sent")}
    mailboxes = await account.mailboxes()
    for path in ("Inbox", "Lists", "Sent"):
        box, status = mailboxes[path], expected[imap_name(path)]
        assert box["totalEmails"] == status["MESSAGES"]
        assert box["unreadEmails"] == status["UNSEEN"]
        assert box["totalThreads"] == box["totalEmails"]
        assert box["unreadThreads"] == box["unreadEmails"]
    assert (mailboxes["Inbox"]["totalEmails"], mailboxes["Inbox"]["unreadEmails"]) == (5, 3)
    assert (mailboxes["Lists"]["totalEmails"], mailboxes["Lists"]["unreadEmails"]) == (2, 1)


async def test_renames_keep_the_id(cyrus_jmap: Jmap, cyrus: Cyrus) -> None:
    created = await cyrus_jmap.call("Mailbox/set", create={"k": {"name": "Projects"}})
    box_id = created["created"]["k"]["id"]
    with Witness(cyrus, cyrus_jmap.username) as witness:
        assert native_id(witness, "Projects") == box_id
    # Through the gateway: RENAME upstream, and Cyrus's MAILBOXID goes with the folder.
    renamed = await cyrus_jmap.call("Mailbox/set", update={box_id: {"name": "Projects 2026"}})
    assert renamed["updated"] == {box_id: None}
    mailboxes = await cyrus_jmap.mailboxes()
    assert mailboxes["Projects 2026"]["id"] == box_id and "Projects" not in mailboxes
    with Witness(cyrus, cyrus_jmap.username) as witness:
        assert native_id(witness, "Projects 2026") == box_id
        assert "Projects 2026" in witness.subscribed()
    # By another client: the same id under the new name, reported as an update.
    since = await state(cyrus_jmap)
    with Witness(cyrus, cyrus_jmap.username) as witness:
        witness.rename("Projects 2026", "Elsewhere")
    changes = await cyrus_jmap.call("Mailbox/changes", sinceState=since)
    assert changes["updated"] == [box_id]
    assert changes["created"] == changes["destroyed"] == []
    mailboxes = await cyrus_jmap.mailboxes()
    assert mailboxes["Elsewhere"]["id"] == box_id and "Projects 2026" not in mailboxes


async def test_create_with_a_role(account: Jmap, cyrus: Cyrus) -> None:
    result = await account.call(
        "Mailbox/set", create={"k": {"name": "Important", "role": "important"}}
    )
    assert result["notCreated"] is None
    box_id = result["created"]["k"]["id"]
    mailboxes = await account.mailboxes()
    assert mailboxes["Important"]["role"] == "important"
    assert mailboxes["Important"]["id"] == box_id
    with Witness(cyrus, account.username) as witness:
        typ, lines = witness.imap.list('""', "Important")
        assert typ == "OK" and len(lines) == 1, lines
        assert isinstance(lines[0], bytes) and b"\\important" in lines[0].lower()
        assert "Important" in witness.subscribed()
    # RFC 8621 2: one mailbox per role; the gateway refuses a second before asking Cyrus.
    again = await account.call(
        "Mailbox/set", create={"k": {"name": "Also important", "role": "important"}}
    )
    assert again["notCreated"]["k"]["properties"] == ["role"]


async def test_rights_come_from_cyrus_acls(account: Jmap, cyrus: Cyrus) -> None:
    user = account.username
    with Witness(cyrus, user) as witness:
        witness.create("Read only")
        # Cyrus refuses an owner's ACL without "a"; it adds the implicit owner rights "lkxan"
        # and the obsolete "c" (RFC 4314 2.1.1) that stands for "k".
        witness.ok(witness.imap.setacl('"Read only"', user, "lrsa"))
        (line,) = witness.ok(witness.imap.myrights('"Read only"'))
    assert isinstance(line, bytes)
    assert set(line.split()[-1].decode()) == set("lrskxcan")
    mailboxes = await account.mailboxes()
    for path in ("Drafts", "Sent", "Trash", "Junk", "Archive"):
        assert mailboxes[path]["myRights"] == dict.fromkeys(RIGHTS, True), path
    inbox = mailboxes["Inbox"]["myRights"]
    assert inbox == {**dict.fromkeys(RIGHTS, True), "mayRename": False, "mayDelete": False}
    # RFC 8621 2: "lr" to read, "i" to add, "te" to remove, "s" seen, "w" keywords, "k" to
    # create a child, "x" to rename or delete, "p" to submit.
    assert mailboxes["Read only"]["myRights"] == {
        "mayReadItems": True,
        "mayAddItems": False,
        "mayRemoveItems": False,
        "maySetSeen": True,
        "maySetKeywords": False,
        "mayCreateChild": True,
        "mayRename": True,
        "mayDelete": True,
        "maySubmit": False,
    }


async def test_changes_report_a_folder_created_elsewhere(cyrus_jmap: Jmap, cyrus: Cyrus) -> None:
    before = await cyrus_jmap.mailboxes()
    since = await state(cyrus_jmap)
    with Witness(cyrus, cyrus_jmap.username) as witness:
        witness.create("Fresh")
        fresh = native_id(witness, "Fresh")
    changes = await cyrus_jmap.call("Mailbox/changes", sinceState=since)
    assert changes["created"] == [fresh]
    assert changes["updated"] == changes["destroyed"] == []
    assert changes["oldState"] == since and not changes["hasMoreChanges"]
    after = await cyrus_jmap.mailboxes()
    assert after["Fresh"]["id"] == fresh
    assert {path: box["id"] for path, box in after.items() if path != "Fresh"} == {
        path: box["id"] for path, box in before.items()
    }
