"""Stores a new message upstream (Email/set create, Email/import): APPEND, then COPY.

The message is APPENDed once, with its flags and internal date, to the first of its
mailboxes, and copied from there to the others, so every copy is the same message (one
Email id). If a copy is refused, what was stored is expunged again: an Email is created
whole or not at all (RFC 8621 4.8: each import is an atomic unit).

When the connection breaks during the APPEND, the gateway cannot know whether the server
stored the message. :func:`find_appended` asks it, on a new connection, by the message's
Message-ID and size among the UIDs the folder gained, so a retry never stores it twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from gateway.cache.mailboxes import MailboxRecord
from gateway.imap import messages
from gateway.imap.connection import ImapConnection
from gateway.imap.errors import CommandFailed
from gateway.imap.responses.codes import parse_appenduid, parse_copyuid
from gateway.imap.search import Header, Larger, Smaller, Uid
from gateway.imap.sequence import from_uid


@dataclass(frozen=True)
class Delivery:
    """One message to store, and where."""

    message: bytes
    mailboxes: tuple[str, ...]  # folder ids; the first gets the APPEND
    flags: tuple[str, ...]
    received_at: datetime | None
    message_id: str | None  # the Message-ID field's value, to recognise the message later


class NoAppendUid(Exception):
    """The upstream stored the message but did not say under which UID (no UIDPLUS)."""


async def deliver(
    conn: ImapConnection, folders: Mapping[str, MailboxRecord], delivery: Delivery
) -> tuple[str, int]:
    """Store the message; return the folder id and UID of its first copy.

    Raises CommandFailed when the upstream refuses it (nothing is left stored).
    """
    first = delivery.mailboxes[0]
    utf8 = "UTF8=ACCEPT" in conn.enabled
    result = await conn.execute(
        messages.append(
            folders[first].name,
            delivery.message,
            flags=delivery.flags,
            received_at=delivery.received_at,
            utf8=utf8,
        )
    )
    code = result.tagged.code
    if code is None or code.name != "APPENDUID":
        raise NoAppendUid("the mail server gave no APPENDUID")
    uid = parse_appenduid(code).uids.min
    await copy_to_others(conn, folders, delivery, uid)
    return first, uid


async def copy_to_others(
    conn: ImapConnection,
    folders: Mapping[str, MailboxRecord],
    delivery: Delivery,
    uid: int,
    existing: Mapping[str, int] | None = None,
) -> None:
    """Copy the stored message to its other mailboxes that do not hold it yet (``existing``:
    folder id -> UID of copies an earlier, cut-off attempt made); on refusal, remove every
    copy, so the message is stored whole or not at all."""
    existing = dict(existing or {})
    others = [f for f in delivery.mailboxes[1:] if f not in existing]
    if not others:
        return
    utf8 = "UTF8=ACCEPT" in conn.enabled
    first = folders[delivery.mailboxes[0]]
    await conn.select(first.name)
    made: list[tuple[str, int]] = list(existing.items())
    try:
        for folder_id in others:
            result = await conn.execute(messages.uid_copy(uid, folders[folder_id].name, utf8=utf8))
            code = result.tagged.code
            if code is not None and code.name == "COPYUID":
                made.extend((folder_id, new) for _, new in parse_copyuid(code).pairs())
    except CommandFailed:
        await _remove(conn, folders, [(first.id, uid), *made])
        raise


async def _remove(
    conn: ImapConnection, folders: Mapping[str, MailboxRecord], copies: list[tuple[str, int]]
) -> None:
    for folder_id, uid in copies:
        await conn.select(folders[folder_id].name)
        await conn.execute_pipelined(*messages.remove(uid))


async def find_appended(
    conn: ImapConnection, folder: MailboxRecord, delivery: Delivery, low: int
) -> int | None:
    """The UID of the message if an APPEND whose answer was lost stored it, else None.

    ``low``: the folder's UIDNEXT before the APPEND; the message is among the UIDs from
    there, matched on its size and, where it has one, its Message-ID.
    """
    await conn.select(folder.name, read_only=True)
    size = len(delivery.message)
    found = await conn.uid_search(Uid(from_uid(low)), Larger(size - 1), Smaller(size + 1))
    candidates = [u for u in found if u >= low]
    if delivery.message_id is not None and candidates:
        header = await conn.uid_search(Uid(candidates), Header("Message-ID", delivery.message_id))
        candidates = [u for u in header if u >= low]
    return min(candidates) if candidates else None
