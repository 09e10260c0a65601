"""Mailbox catch-up: one LIST round trip tells what changed upstream since the last look.

``LIST "" "*" RETURN (SUBSCRIBED SPECIAL-USE STATUS (...))`` (RFC 5258, RFC 5819, RFC 6154)
returns every folder with its subscription, role, counts and object id in one command. The
listing is turned into :class:`MailboxRecord` values and compared with the index, and the
difference is logged as Mailbox changes; the counts are the upstream's own STATUS figures.

Mailbox ids, chosen once per account and stored with the index so they never change silently:

1. ``MAILBOXID`` (RFC 8474 OBJECTID), where the upstream offers it (Cyrus);
2. Dovecot's ``X-GUID``, which survives renames made by any client;
3. otherwise ids the gateway assigns and keeps by name in Redis; a rename made through the
   gateway keeps the id, a rename made by another client looks like delete plus create.

Folders that exist only as a level of the hierarchy (``\\NonExistent``) have no object id; their
id is derived from their name.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from gateway.cache.mailboxes import LISTING_FIELD, MailboxRecord, MailboxStore
from gateway.imap import mailboxes
from gateway.imap.connection import ImapConnection
from gateway.imap.errors import CommandFailed, ProtocolError
from gateway.imap.mailboxes import ListReturn, StatusItem
from gateway.imap.responses.list import ListEntry, parse_list
from gateway.imap.responses.status import StatusEntry, parse_status
from gateway.imap.responses.tokens import Untagged
from gateway.imap.responses.values import decode_mailbox_name, mailbox_raw

log = logging.getLogger(__name__)
T = TypeVar("T")

STRATEGY_FIELD = "mailbox-ids"
# RFC 8474 4: objectid = 1*255(ALPHA / DIGIT / "_" / "-"); anything else is not used as an id.
OBJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
INBOX = "INBOX"

# RFC 8621 2: a role is the IANA mailbox attribute name in lower case (RFC 8457, RFC 6154).
ROLE_ATTRIBUTES = {
    "\\All": "all",
    "\\Archive": "archive",
    "\\Drafts": "drafts",
    "\\Flagged": "flagged",
    "\\Important": "important",
    "\\Junk": "junk",
    "\\Sent": "sent",
    "\\Trash": "trash",
}


class IdStrategy(enum.Enum):
    OBJECTID = "objectid"
    X_GUID = "x-guid"
    GATEWAY = "gateway"


@dataclass(frozen=True)
class Listed:
    """One folder as the upstream listed it."""

    entry: ListEntry
    status: StatusEntry | None
    rights: str | None


async def choose_strategy(conn: ImapConnection, store: MailboxStore) -> IdStrategy:
    stored = await store.meta(STRATEGY_FIELD)
    if stored is not None:
        return IdStrategy(stored)
    if "OBJECTID" in conn.capabilities:
        strategy = IdStrategy.OBJECTID
    else:
        try:
            await conn.execute(mailboxes.status(INBOX, [StatusItem.X_GUID], utf8=False))
            strategy = IdStrategy.X_GUID
        except CommandFailed:
            strategy = IdStrategy.GATEWAY
    await store.set_meta(STRATEGY_FIELD, strategy.value)
    return strategy


def status_items(conn: ImapConnection, strategy: IdStrategy) -> list[StatusItem]:
    items = [StatusItem.MESSAGES, StatusItem.UNSEEN, StatusItem.UIDNEXT, StatusItem.UIDVALIDITY]
    if "CONDSTORE" in conn.capabilities:
        items.append(StatusItem.HIGHESTMODSEQ)
    # MAILBOXID is asked apart (see object_ids): Cyrus 3.6 answers garbage for it when counts
    # are asked in the same STATUS of an unselected folder.
    if strategy is IdStrategy.X_GUID:
        items.append(StatusItem.X_GUID)
    return items


async def object_ids(
    conn: ImapConnection, folders: list[Listed], old: Mapping[str, MailboxRecord]
) -> dict[str, str]:
    """RFC 8474 MAILBOXID of every folder: kept from the index for a folder whose name and
    UIDVALIDITY are unchanged, else asked for all at once with one more LIST."""
    known = {(r.name, r.uidvalidity): r.id for r in old.values()}
    ids: dict[str, str] = {}
    for folder in folders:
        if folder.status is not None:
            key = (folder.entry.name, folder.status.items.get("UIDVALIDITY"))
            if key in known:
                ids[folder.entry.name] = known[key]
    if all(f.entry.name in ids for f in folders if f.status is not None):
        return ids
    utf8 = "UTF8=ACCEPT" in conn.enabled
    result = await conn.execute(mailboxes.list_every(status=[StatusItem.MAILBOXID]))
    for response in result.data("STATUS"):
        status = parse_status(response, utf8=utf8)
        if status.mailbox_id and OBJECT_ID.fullmatch(status.mailbox_id):
            ids.setdefault(status.name, status.mailbox_id)
    return ids


@dataclass(frozen=True)
class Listing:
    """What the upstream listed: a digest of its words and, when it changed, the folders."""

    digest: str
    folders: list[Listed] | None


async def list_mailboxes(
    conn: ImapConnection, strategy: IdStrategy, known_digest: str | None
) -> Listing:
    """Every folder with its status: one round trip where LIST-STATUS is offered.

    A listing identical to the one behind ``known_digest`` is not parsed (folders None).
    """
    caps = conn.capabilities
    utf8 = "UTF8=ACCEPT" in conn.enabled
    items = status_items(conn, strategy)
    if {"LIST-STATUS", "LIST-EXTENDED"} <= caps:
        returns = [ListReturn.SUBSCRIBED]
        returns += [ListReturn.SPECIAL_USE] if "SPECIAL-USE" in caps else []
        returns += [ListReturn.MYRIGHTS] if "LIST-MYRIGHTS" in caps else []
        result = await conn.execute_unselected(mailboxes.list_every(returns, items))
        digest = _digest(result.raw)
        if digest == known_digest:
            return Listing(digest, None)
        return Listing(digest, _pair(result.untagged, utf8))
    folders = await _list_one_by_one(conn, items, utf8)
    digest = _digest([repr(f).encode() for f in folders])
    return Listing(digest, None if digest == known_digest else folders)


def _digest(lines: list[bytes]) -> str:
    return hashlib.sha256(b"\r\n".join(lines)).hexdigest()


async def _list_one_by_one(
    conn: ImapConnection, items: list[StatusItem], utf8: bool
) -> list[Listed]:
    """Servers without LIST-STATUS: LIST, LSUB, then STATUS per selectable folder."""
    await conn.unselect()
    listed = [
        parse_list(r, utf8=utf8) for r in (await conn.execute(mailboxes.list_every())).data("LIST")
    ]
    subscribed = {
        parse_list(r, utf8=utf8).name
        for r in (await conn.execute(mailboxes.lsub_every())).data("LSUB")
    }
    folders = []
    for entry in listed:
        status = None
        if entry.selectable:
            result = await conn.execute(mailboxes.status(entry.name, items, utf8=utf8))
            status = next((parse_status(r, utf8=utf8) for r in result.data("STATUS")), None)
        attributes = entry.attributes | ({"\\Subscribed"} if entry.name in subscribed else set())
        folders.append(Listed(_with_attributes(entry, attributes), status, None))
    return folders


def _with_attributes(entry: ListEntry, attributes: Iterable[str]) -> ListEntry:
    return ListEntry(
        frozenset(attributes), entry.delimiter, entry.name, entry.raw_name, entry.extended
    )


def _pair(responses: list[Untagged], utf8: bool) -> list[Listed]:
    """Match each LIST line with the STATUS and MYRIGHTS lines about the same folder."""
    entries = _parsed(parse_list, responses, "LIST", utf8)
    statuses = {s.name: s for s in _parsed(parse_status, responses, "STATUS", utf8)}
    rights = dict(_myrights(r, utf8) for r in responses if r.keyword == "MYRIGHTS")
    return [Listed(e, statuses.get(e.name), rights.get(e.name)) for e in entries]


def _parsed(
    parse: Callable[..., T], responses: list[Untagged], keyword: str, utf8: bool
) -> list[T]:
    """One folder whose name is not valid modified UTF-7 (written by a broken client) is
    left out, rather than making every Mailbox call of the account fail."""
    parsed = []
    for response in responses:
        if response.keyword == keyword:
            try:
                parsed.append(parse(response, utf8=utf8))
            except ProtocolError:
                log.warning("skipping a %s line the gateway cannot read", keyword)
    return parsed


def _myrights(response: Untagged, utf8: bool) -> tuple[str, str]:
    """``* MYRIGHTS name rights`` (RFC 4314 3.8)."""
    name, rights = response.values[0], response.values[1]
    value = rights.decode() if isinstance(rights, bytes) else str(rights)
    return decode_mailbox_name(mailbox_raw(name), utf8=utf8), value


def name_id(name: str) -> str:
    """The id of a hierarchy-only folder: stable for its name, unique in the account."""
    return "n" + hashlib.sha256(name.encode()).hexdigest()[:24]


def build_records(
    folders: list[Listed],
    strategy: IdStrategy,
    name_ids: dict[str, str],
    objects: Mapping[str, str] | None = None,
    previous: Mapping[str, MailboxRecord] | None = None,
) -> dict[str, MailboxRecord]:
    """Turn a listing into records; ``name_ids`` (GATEWAY strategy) gains new names and
    ``objects`` holds the MAILBOXIDs (OBJECTID strategy).

    RFC 5819 lets a server leave out the STATUS of a folder it cannot report on at that
    moment; such a folder keeps the id and figures of its ``previous`` record, rather than
    looking unselectable (and its mail deleted) until the next listing.
    """
    earlier = {r.name: r for r in (previous or {}).values() if r.selectable}
    kept = {
        f.entry.name: earlier[f.entry.name]
        for f in folders
        if f.status is None and f.entry.selectable and f.entry.name in earlier
    }
    ids = {
        f.entry.name: kept[f.entry.name].id
        if f.entry.name in kept
        else _mailbox_id(f, strategy, name_ids, objects or {})
        for f in folders
    }
    taken_roles: set[str] = set()
    records: dict[str, MailboxRecord] = {}
    for folder in sorted(folders, key=lambda f: (f.entry.name.upper() != INBOX, f.entry.name)):
        entry = folder.entry
        role = _role(entry, taken_roles)
        parent = entry.name.rsplit(entry.delimiter, 1)[0] if entry.delimiter else None
        status: Mapping[str, int | None] = folder.status.items if folder.status else {}
        before = kept.get(entry.name)
        if before is not None:
            status = {
                "MESSAGES": before.total,
                "UNSEEN": before.unread,
                "UIDVALIDITY": before.uidvalidity,
                "UIDNEXT": before.uidnext,
                "HIGHESTMODSEQ": before.highestmodseq,
            }
        record = MailboxRecord(
            id=ids[entry.name],
            name=INBOX if entry.name.upper() == INBOX else entry.name,
            delimiter=entry.delimiter,
            parent_id=ids.get(parent) if parent and parent != entry.name else None,
            role=role,
            subscribed=entry.has_attribute("\\Subscribed"),
            selectable=entry.selectable and (folder.status is not None or before is not None),
            may_create_child=not entry.has_attribute("\\Noinferiors"),
            rights=folder.rights,
            total=status.get("MESSAGES") or 0,
            unread=status.get("UNSEEN") or 0,
            uidvalidity=status.get("UIDVALIDITY"),
            uidnext=status.get("UIDNEXT"),
            highestmodseq=status.get("HIGHESTMODSEQ"),
        )
        records[record.id] = record
    return records


def _mailbox_id(
    folder: Listed, strategy: IdStrategy, name_ids: dict[str, str], objects: Mapping[str, str]
) -> str:
    name = folder.entry.name
    if strategy is IdStrategy.GATEWAY:
        return name_ids.setdefault(name, "g" + secrets.token_hex(12))
    if strategy is IdStrategy.OBJECTID and name in objects:
        return objects[name]
    guid = folder.status.text_items.get("X-GUID") if folder.status else None
    if strategy is IdStrategy.X_GUID and guid and OBJECT_ID.fullmatch(guid):
        return "m" + guid
    return name_id(name)


def _role(entry: ListEntry, taken: set[str]) -> str | None:
    """RFC 8621 2: one role per mailbox and no two mailboxes with the same role."""
    if entry.name.upper() == INBOX:
        role: str | None = "inbox"
    else:
        role = next(
            (ROLE_ATTRIBUTES[a] for a in sorted(entry.attributes) if a in ROLE_ATTRIBUTES), None
        )
    if role is None or role in taken:
        return None
    taken.add(role)
    return role


async def sync_mailboxes(store: MailboxStore, conn: ImapConnection) -> None:
    """Catch up the account's mailboxes; when the listing is the one the index was built
    from, without the lease.

    A listing taken before the lease is written only if the index is still the one it was
    compared with: otherwise another process wrote meanwhile, perhaps from a later listing,
    and the folders are listed again under the lease.
    """
    chosen, digest = await store.metas(STRATEGY_FIELD, LISTING_FIELD)
    early = None
    if chosen is not None and digest is not None:
        early = await list_mailboxes(conn, IdStrategy(chosen), digest)
        if early.folders is None:
            return
    async with store.lease():
        strategy = await choose_strategy(conn, store)
        current = await store.meta(LISTING_FIELD)
        if early is not None and current == digest:
            listing = early
        else:
            listing = await list_mailboxes(conn, strategy, current)
        if listing.folders is None:
            return
        folders = listing.folders
        old = await store.load()
        name_ids = await store.name_ids() if strategy is IdStrategy.GATEWAY else {}
        known = dict(name_ids)
        objects = await object_ids(conn, folders, old) if strategy is IdStrategy.OBJECTID else None
        records = build_records(folders, strategy, name_ids, objects, old)
        if strategy is IdStrategy.GATEWAY:
            listed = {f.entry.name for f in folders}
            added = {n: i for n, i in name_ids.items() if known.get(n) != i}
            await store.set_name_ids(added, [n for n in known if n not in listed])
        await store.replace(old, records, listing.digest)
