"""Who a login really is, in the upstream's own words: the object id of the user's INBOX.

IMAP servers accept many spellings of one user: Dovecot (``auth_username_format = %Lu``, and
``%n`` in a passdb) lets ``ALICE``, ``Alice`` and ``alice@anything`` in as ``alice``; Cyrus
lower-cases. Whatever spelling logged in, the INBOX is the same mailbox, and its id is fixed
for the mailbox's life and unguessable, so it names the user for the gateway's accounts and
connection pools. Asked once per new connection, right after login (with the ENABLE, in one
round trip):

1. RFC 8474 ``MAILBOXID`` where the server has OBJECTID (Cyrus), asked alone: Cyrus 3.6 answers
   garbage for it when counts are asked in the same STATUS;
2. Dovecot's mailbox ``X-GUID``, which Dovecot keeps through renames and ``dsync`` migrations;
3. otherwise nothing (the server refuses the item): the caller falls back to the user name.
"""

from __future__ import annotations

import re

from gateway.imap.commands import Command
from gateway.imap.connection import ImapConnection, Result
from gateway.imap.errors import ProtocolError
from gateway.imap.mailboxes import StatusItem, status
from gateway.imap.responses.status import parse_status

# RFC 8474 4: objectid = 1*255(ALPHA / DIGIT / "_" / "-"); Dovecot's GUIDs are 32 hex digits.
_OBJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")


def identity_request(conn: ImapConnection) -> tuple[Command, StatusItem]:
    """The STATUS that asks the logged-in user's INBOX id, and the item it asks for."""
    item = StatusItem.MAILBOXID if "OBJECTID" in conn.capabilities else StatusItem.X_GUID
    return status("INBOX", [item], utf8=False), item


def inbox_identity(result: Result, item: str) -> str | None:
    """``mailboxid:<id>`` or ``x-guid:<guid>`` from that STATUS's answer, or None when the
    server keeps no such id (it refused the item)."""
    if result.tagged.status != "OK":
        return None  # BAD: the server does not know the item
    for response in result.data("STATUS"):
        value = parse_status(response).text_items.get(item)
        if value is None:
            continue
        if not _OBJECT_ID.fullmatch(value):
            raise ProtocolError(f"the upstream's INBOX {item} is not an object id")
        return f"{item.lower()}:{value}"
    return None
