"""Mailbox objects from index records: names, rights from ACLs (RFC 4314) or attributes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.cache.mailboxes import MailboxRecord
from gateway.translators.mailbox.objects import jmap_name, my_rights, to_object
from tests.jmapclient import MAILBOX_RIGHTS

BASE = MailboxRecord(
    id="m1",
    name="Work/Projects",
    delimiter="/",
    parent_id="m0",
    role=None,
    subscribed=True,
    selectable=True,
    may_create_child=True,
    rights=None,
    total=3,
    unread=1,
    uidvalidity=7,
    uidnext=4,
    highestmodseq=9,
)
PARENT = replace(BASE, id="m0", name="Work", parent_id=None)


def test_name_is_one_level() -> None:
    records = {"m0": PARENT, "m1": BASE}
    assert jmap_name(BASE, records) == "Projects"
    assert jmap_name(PARENT, records) == "Work"
    inbox = replace(BASE, id="i", name="INBOX", parent_id=None, role="inbox")
    assert jmap_name(inbox, {"i": inbox}) == "Inbox"


@pytest.mark.parametrize(
    ("acl", "expected"),
    [
        # Cyrus's owner rights: everything.
        (
            "lrswipkxtecdan",
            dict.fromkeys(MAILBOX_RIGHTS, True),
        ),
        # Read-only sharing: lookup, read, seen.
        (
            "lrs",
            {
                "mayReadItems": True,
                "mayAddItems": False,
                "mayRemoveItems": False,
                "maySetSeen": True,
                "maySetKeywords": False,
                "mayCreateChild": False,
                "mayRename": False,
                "mayDelete": False,
                "maySubmit": False,
            },
        ),
        # RFC 8621 2: "te" are both needed to remove, "lr" both to read.
        (
            "ltw",
            {
                "mayReadItems": False,
                "mayAddItems": False,
                "mayRemoveItems": False,
                "maySetSeen": False,
                "maySetKeywords": True,
                "mayCreateChild": False,
                "mayRename": False,
                "mayDelete": False,
                "maySubmit": False,
            },
        ),
    ],
)
def test_rights_from_the_acl(acl: str, expected: dict[str, bool]) -> None:
    assert my_rights(replace(BASE, rights=acl)) == expected


def test_rights_without_an_acl() -> None:
    rights = my_rights(BASE)
    assert all(rights.values())
    hierarchy_only = my_rights(replace(BASE, selectable=False))
    assert not hierarchy_only["mayAddItems"] and hierarchy_only["mayCreateChild"]
    assert not my_rights(replace(BASE, may_create_child=False))["mayCreateChild"]
    inbox = my_rights(replace(BASE, role="inbox", rights="lrswipkxtecdan"))
    assert not inbox["mayRename"] and not inbox["mayDelete"] and inbox["mayAddItems"]


def test_object_has_every_property() -> None:
    counts = {"e": 3, "u": 1, "t": 2, "r": 1}
    obj = to_object(BASE, {"m0": PARENT, "m1": BASE}, {}, counts)
    assert obj == {
        "id": "m1",
        "name": "Projects",
        "parentId": "m0",
        "role": None,
        "sortOrder": 10,
        "totalEmails": 3,
        "unreadEmails": 1,
        "totalThreads": 2,
        "unreadThreads": 1,
        "myRights": my_rights(BASE),
        "isSubscribed": True,
    }
    assert to_object(BASE, {"m1": BASE}, {"m1": 4}, {})["sortOrder"] == 4
    assert to_object(BASE, {"m1": BASE}, {}, {})["totalEmails"] == 0
