"""Mailbox objects (RFC 8621 2) built from index records, and what a client may set.

The counts come from the email index (gateway.sync.tallies), which knows every message's
flags and thread; the upstream's STATUS figures would count messages flagged \\Deleted and
unread drafts, and know nothing of threads.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from typing import Any, Final

from gateway.cache.mailboxes import MailboxRecord
from gateway.jmap.properties import Property, PropertyTable
from gateway.sync.tallies import TOTAL_EMAILS, TOTAL_THREADS, UNREAD_EMAILS, UNREAD_THREADS

INBOX_NAME = "Inbox"


class Source(enum.Enum):
    """Where a Mailbox property's value comes from."""

    INDEX = "index"  # the mailbox's index record (LIST, the gateway's own sort orders)
    TALLIES = "tallies"  # the email index's counters (gateway.sync.tallies)
    ACL = "acl"  # the upstream's rights (RFC 4314) or what the gateway allows


def _row(name: str, source: Source, *, server_set: bool = False) -> Property[Source]:
    return Property(name, source, server_set=server_set, always=name == "id")


# RFC 8621 2: the Mailbox properties, in the order /get returns them by default. Nothing is
# immutable: the properties a client may set it may also change.
PROPERTIES: Final = PropertyTable(
    [
        _row("id", Source.INDEX, server_set=True),
        _row("name", Source.INDEX),
        _row("parentId", Source.INDEX),
        _row("role", Source.INDEX),
        _row("sortOrder", Source.INDEX),
        _row("totalEmails", Source.TALLIES, server_set=True),
        _row("unreadEmails", Source.TALLIES, server_set=True),
        _row("totalThreads", Source.TALLIES, server_set=True),
        _row("unreadThreads", Source.TALLIES, server_set=True),
        _row("myRights", Source.ACL, server_set=True),
        _row("isSubscribed", Source.INDEX),
    ],
    unknown="unknown Mailbox properties {}",
)
COUNT_PROPERTIES = list(PROPERTIES.named(Source.TALLIES))

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
    record: MailboxRecord,
    records: Mapping[str, MailboxRecord],
    sort_orders: Mapping[str, int],
    counts: Mapping[str, int],
) -> dict[str, Any]:
    """``counts``: the mailbox's counters by kind (gateway.sync.tallies); absent ones are 0."""
    return {
        "id": record.id,
        "name": jmap_name(record, records),
        "parentId": record.parent_id,
        "role": record.role,
        "sortOrder": sort_orders.get(
            record.id, DEFAULT_SORT_ORDER.get(record.role or "", OTHER_SORT_ORDER)
        ),
        "totalEmails": max(0, counts.get(TOTAL_EMAILS, 0)),
        "unreadEmails": max(0, counts.get(UNREAD_EMAILS, 0)),
        "totalThreads": max(0, counts.get(TOTAL_THREADS, 0)),
        "unreadThreads": max(0, counts.get(UNREAD_THREADS, 0)),
        "myRights": my_rights(record),
        "isSubscribed": record.subscribed,
    }
