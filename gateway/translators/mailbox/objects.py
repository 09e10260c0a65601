"""Mailbox objects (RFC 8621 2) built from index records, and what a client may set.

Thread counts follow the email counts until the gateway knows threads (the Email/Thread issue):
``totalThreads`` and ``unreadThreads`` come from :func:`thread_counts`, the one place to change.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from gateway.cache.mailboxes import MailboxRecord

INBOX_NAME = "Inbox"

# The property table drives /get filtering and /set validation.
PROPERTIES = (
    "id",
    "name",
    "parentId",
    "role",
    "sortOrder",
    "totalEmails",
    "unreadEmails",
    "totalThreads",
    "unreadThreads",
    "myRights",
    "isSubscribed",
)
SETTABLE = frozenset({"name", "parentId", "role", "sortOrder", "isSubscribed"})
SERVER_SET = frozenset(PROPERTIES) - SETTABLE
COUNT_PROPERTIES = ["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"]

# Defaults for sortOrder until a client sets one: special folders first, in the usual order.
DEFAULT_SORT_ORDER = {"inbox": 1, "drafts": 2, "sent": 3, "archive": 4, "junk": 5, "trash": 6}
OTHER_SORT_ORDER = 10
MAX_SORT_ORDER = 2**31 - 1  # RFC 8621 2: 0 <= sortOrder < 2^31

# RFC 8621 2 MailboxRights and the RFC 4314 rights each needs (all of them).
ACL_RIGHTS = {
    "mayReadItems": "lr",
    "mayAddItems": "i",
    "mayRemoveItems": "te",
    "maySetSeen": "s",
    "maySetKeywords": "w",
    "mayCreateChild": "k",
    "mayRename": "x",
    "mayDelete": "x",
    "maySubmit": "p",
}


def jmap_name(record: MailboxRecord, records: Mapping[str, MailboxRecord]) -> str:
    """One level of the hierarchy; the upstream's full name is never shown."""
    if record.role == "inbox":
        return INBOX_NAME
    parent = records.get(record.parent_id) if record.parent_id else None
    if parent is None or not record.delimiter:
        return record.name
    return record.name[len(parent.name) + len(record.delimiter) :]


def thread_counts(record: MailboxRecord) -> tuple[int, int]:
    """Until threads exist, each email counts as its own thread."""
    return record.total, record.unread


def my_rights(record: MailboxRecord) -> dict[str, bool]:
    """From the upstream's ACL when it reports one (RFC 4314), else what the gateway allows."""
    key = (record.rights, record.selectable, record.may_create_child, record.role == "inbox")
    return dict(_rights(*key))


@functools.lru_cache(maxsize=256)
def _rights(
    acl: str | None, selectable: bool, may_create_child: bool, inbox: bool
) -> tuple[tuple[str, bool], ...]:
    """Few distinct combinations exist, and a listing of hundreds of folders repeats them."""
    if acl is not None:
        rights = {name: all(r in acl for r in needs) for name, needs in ACL_RIGHTS.items()}
    else:
        rights = {name: selectable for name in ACL_RIGHTS}
        # A level of the hierarchy holds no mail but takes children, renames and deletes.
        rights["mayCreateChild"] = rights["mayRename"] = rights["mayDelete"] = True
    if inbox:
        # RFC 3501 6.3.5: renaming INBOX is special (it moves the mail); the gateway refuses it.
        rights["mayRename"] = rights["mayDelete"] = False
    rights["mayCreateChild"] = rights["mayCreateChild"] and may_create_child
    return tuple(rights.items())


def to_object(
    record: MailboxRecord, records: Mapping[str, MailboxRecord], sort_orders: Mapping[str, int]
) -> dict[str, Any]:
    total_threads, unread_threads = thread_counts(record)
    return {
        "id": record.id,
        "name": jmap_name(record, records),
        "parentId": record.parent_id,
        "role": record.role,
        "sortOrder": sort_orders.get(
            record.id, DEFAULT_SORT_ORDER.get(record.role or "", OTHER_SORT_ORDER)
        ),
        "totalEmails": record.total,
        "unreadEmails": record.unread,
        "totalThreads": total_threads,
        "unreadThreads": unread_threads,
        "myRights": my_rights(record),
        "isSubscribed": record.subscribed,
    }
