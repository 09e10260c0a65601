"""Email catch-up: visit only the folders whose listing changed, and only for what changed.

The mailbox sync's one LIST-STATUS round trip gives each folder's UIDVALIDITY, UIDNEXT,
MESSAGES and HIGHESTMODSEQ. A folder whose figures are those the index last answered is not
opened at all. Otherwise it is EXAMINEd with QRESYNC (RFC 7162 3.2.5), which returns in the
same round trip the flags changed since the last visit and the UIDs expunged (VANISHED); the
new UIDs are then found with one UID SEARCH and fetched in pages. A changed UIDVALIDITY
re-indexes the folder; a folder never seen is indexed in pages, so memory stays flat.

Email ids, chosen once per account and stored with the index so they never change silently:

1. ``EMAILID`` / ``THREADID`` (RFC 8474) where the upstream offers OBJECTID (Cyrus);
2. Dovecot's message ``X-GUID``, kept by COPY and MOVE, with the gateway's own threads;
3. otherwise a digest of immutable header fields and the size, with the gateway's threads.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Sequence

from gateway.cache.emails import EmailStore, FolderMark
from gateway.cache.locks import Lease
from gateway.cache.mailboxes import MailboxRecord, MailboxStore
from gateway.imap.connection import ImapConnection, Result
from gateway.imap.errors import CommandFailed, ProtocolError
from gateway.imap.fetch import Attr, BodySection, FetchAtt, uid_fetch
from gateway.imap.responses.fetch import FetchItem, fetch_key, fetches_from_raw
from gateway.imap.search import ALL, Criterion, Uid
from gateway.imap.sequence import UidSet, from_uid, split_uid_set
from gateway.mime.bodyparts import parse_cost
from gateway.mime.limits import HEADER_SECTION_OCTETS
from gateway.offload import sized
from gateway.sync.index_writer import IndexWriter, NewCopy
from gateway.sync.mailboxes import OBJECT_ID
from gateway.sync.reports import DeliveryReports
from gateway.sync.threads import THREAD_FIELDS, Links, Threader, digest_id, thread_id_for

log = logging.getLogger(__name__)

STRATEGY_FIELD = "email-ids"
MAILBOX_STRATEGY_FIELD = "mailbox-ids"
# New messages fetched per UID FETCH: bounds memory and the size of one index transaction.
PAGE = 500
# The next UID FETCH goes out before a chunk is indexed only behind an answer this small (a
# page of 500 typical messages' thread fields is about 300 KB; one of strangers' messages of
# megabytes of Subject fields can reach 500 times HEADER_SECTION_OCTETS).
AHEAD_OCTETS = 16 * 1024 * 1024
DIGEST_FIELDS = (*THREAD_FIELDS, "DATE", "FROM")
# What a new message's FETCH answer must hold (as FetchItem keys) to be indexed.
_REQUIRED = frozenset(fetch_key(a) for a in (Attr.FLAGS, Attr.INTERNALDATE, Attr.SIZE))


class EmailIds(enum.Enum):
    OBJECTID = "objectid"
    X_GUID = "x-guid"
    DIGEST = "digest"


async def choose_ids(conn: ImapConnection, store: EmailStore) -> EmailIds:
    """The account's id strategy: the stored one, else the best the upstream offers.

    Dovecot has no capability naming X-GUID; the mailbox sync already found out whether
    STATUS answers X-GUID, and a server that keeps folder GUIDs keeps message GUIDs too.
    """
    stored = await store.meta(STRATEGY_FIELD)
    if stored is not None:
        return EmailIds(stored)
    if "OBJECTID" in conn.capabilities:
        strategy = EmailIds.OBJECTID
    elif await store.meta(MAILBOX_STRATEGY_FIELD) == "x-guid":
        strategy = EmailIds.X_GUID
    else:
        strategy = EmailIds.DIGEST
    await store.set_meta(STRATEGY_FIELD, strategy.value)
    return strategy


def _short_id(prefix: str, material: bytes) -> str:
    """An id from a digest: 100 bits, in the characters RFC 8620 1.2 allows.

    Ids are stored several times per message (record, uid map, threads, change logs), so
    they are kept short; 100 bits make a collision among a billion messages unlikely
    (about 1 in 10^12)."""
    return digest_id(prefix, material)


async def sync_emails(
    store: EmailStore,
    conn: ImapConnection,
    mailboxes: MailboxStore,
    reports: DeliveryReports | None = None,
) -> None:
    """Bring the email index in step with the folders the mailbox index lists; ``reports``
    looks at the new messages of each folder for delivery reports."""
    indexed = await store.indexed()
    if indexed and _stale(_folders(await mailboxes.load()), await store.marks()) == ([], []):
        return
    async with store.lease() as held:
        # Again under the lease, folders too: another process may have caught up meanwhile,
        # or listed folders this one has not seen (which must not look deleted).
        folders = _folders(await mailboxes.load())
        marks = await store.marks()
        stale, gone = _stale(folders, marks)
        # Until a writer's finish() marks it, the index was never complete: the first
        # indexing (or one resumed after an interruption) writes no per-id change log.
        initial = not await store.indexed()
        if not stale and not gone and not initial:
            return
        strategy = await choose_ids(conn, store)
        own_threads = strategy is not EmailIds.OBJECTID
        writer = IndexWriter(store, held, own_threads=own_threads, initial=initial)
        visit = _FolderVisit(conn, store, writer, strategy, held, reports)
        empty = [m for m in stale if m.total == 0 and m.uidnext is not None]
        for mailbox_id, old in (await store.held_uids(m.id for m in empty)).items():
            # Shown empty by the listing: nothing to fetch, whatever it held is gone. Its
            # STATUS figures are a sound baseline for the next QRESYNC: anything arriving
            # after the listing has a higher modseq and a UID at or above its UIDNEXT.
            record = folders[mailbox_id]
            mark = FolderMark(
                record.uidvalidity or 0, record.highestmodseq, record.uidnext or 1, _status(record)
            )
            writer.empty_folder(mailbox_id, old, mark)
        for record in stale:
            if record in empty:
                continue
            try:
                await visit.run(record, marks.get(record.id))
            except CommandFailed as exc:
                # Renamed or deleted since the listing, or refused: the next listing says
                # which; the other folders need not wait for it.
                log.warning("email sync skipped a folder the server refused: %s", exc)
            await held.renew()
        for mailbox_id, old in (await store.held_uids(gone)).items():
            writer.forget_folder(mailbox_id, old)
        await held.renew()
        await writer.finish()


def _links(headers: list[bytes]) -> list[Links]:
    """What new messages say of their threads, from their HEADER.FIELDS (a page of them can
    be megabytes of a stranger's text: off the loop then)."""
    return [Links.from_block(h) for h in headers]


def _bytes_or_none(value: object) -> bytes | None:
    return value if isinstance(value, bytes) else None


def _created(copies: list[NewCopy], created: list[str]) -> dict[int, str]:
    new = set(created)
    return {c.uid: c.email_id for c in copies if c.email_id in new}


def _folders(mailboxes: dict[str, MailboxRecord]) -> dict[str, MailboxRecord]:
    return {m.id: m for m in mailboxes.values() if m.selectable and m.uidvalidity is not None}


def _stale(
    folders: dict[str, MailboxRecord], marks: dict[str, FolderMark]
) -> tuple[list[MailboxRecord], list[str]]:
    """Folders whose listing moved since the index followed them, and folders gone."""
    stale = [m for m in folders.values() if not _unchanged(m, marks.get(m.id))]
    gone = [i for i in marks if i not in folders]
    return stale, gone


def _status(record: MailboxRecord) -> tuple[int | None, int | None, int, int]:
    """The listing's figures a visit answers. UNSEEN is among them for servers without
    CONDSTORE, where it is the only sign of flag changes that STATUS gives."""
    return (record.highestmodseq, record.uidnext, record.total, record.unread)


def _unchanged(record: MailboxRecord, mark: FolderMark | None) -> bool:
    return (
        mark is not None
        and mark.uidvalidity == record.uidvalidity
        and mark.status == _status(record)
    )


class _FolderVisit:
    """Brings one folder's part of the index up to date."""

    def __init__(
        self,
        conn: ImapConnection,
        store: EmailStore,
        writer: IndexWriter,
        strategy: EmailIds,
        held: Lease,
        reports: DeliveryReports | None = None,
    ) -> None:
        self.conn = conn
        self.reports = reports
        self.held = held
        self.store = store
        self.writer = writer
        self.strategy = strategy
        self.threader = Threader(store)

    async def run(self, record: MailboxRecord, mark: FolderMark | None) -> None:
        qresync = "QRESYNC" in self.conn.enabled
        incremental = mark is not None and mark.uidvalidity == record.uidvalidity
        since = None
        if incremental and qresync and mark is not None and mark.modseq:
            since = (mark.uidvalidity, mark.modseq)
        state = await self.conn.select(record.name, read_only=True, qresync=since)
        if mark is None or state.uidvalidity != mark.uidvalidity:
            if mark is None:
                # Marked at once, so a folder deleted before its first index completes is
                # still known to have copies to forget; UIDVALIDITY 0 (RFC 3501: never a
                # valid one) makes the next sync start it over.
                await self.store.set_mark(record.id, FolderMark(0, None, 1, (None, None, -1)))
            await self.writer.start_over(record.id)
            new = await self._search(ALL)
        elif since:
            self.writer.remove_later(
                record.id, await self.store.email_ids_of(record.id, state.vanished)
            )
            changed = {f.uid: f.flags for f in state.fetches if f.uid and f.flags is not None}
            known = {u: f for u, f in changed.items() if u < mark.uidnext}
            if known:
                await self.writer.set_flags(record.id, known)
            new = await self._search(Uid(from_uid(mark.uidnext)), above=mark.uidnext - 1)
        else:
            new = await self._compare_all(record.id)
        # New emails (not copies of known ones) by UID: what a delivery report may be.
        arrived: dict[int, str] = {}
        chunks = deque(chunk for page in new.pages(PAGE) for chunk in split_uid_set(page))
        # One UID FETCH in flight ahead: the upstream answers chunk n+1 while chunk n is
        # parsed and written. Only behind a chunk of at most AHEAD_OCTETS, so what is held
        # at once stays one chunk's answer and AHEAD_OCTETS.
        ahead = self._fetch(chunks.popleft()) if chunks else None
        # And one index script in flight behind: Redis applies chunk n while chunk n+1 is
        # parsed (IndexWriter.add_copies, ahead); the writer waits for it before any read.
        # The last chunk's script is awaited at once: nothing is left to overlap it with.
        settled = False
        try:
            while ahead is not None:
                result = await ahead
                ahead = None
                if chunks and sum(map(len, result.raw)) <= AHEAD_OCTETS:
                    ahead = self._fetch(chunks.popleft())
                more = ahead is not None or bool(chunks)
                created = await self._index_new(record.id, result, overlap=more)
                if self.reports is not None:
                    # Kept only for the report check: 100,000 new emails are megabytes.
                    arrived.update(created)
                if ahead is None and chunks:
                    ahead = self._fetch(chunks.popleft())
                await self.held.renew()
            await self.writer.settle()
            settled = True
        finally:
            if not settled:
                await self.writer.abandon()
            if ahead is not None:
                # Cancelled mid-command, the connection is dropped rather than reused.
                ahead.cancel()
                await asyncio.wait({ahead})
                if not ahead.cancelled():
                    ahead.exception()
        if self.reports is not None and arrived:
            await self.reports.arrived(self.conn, arrived)
            await self.held.renew()
        self.writer.mark(
            record.id,
            FolderMark(
                state.uidvalidity,
                state.highestmodseq,
                state.uidnext or 1,
                _status(record),
            ),
        )

    async def _search(self, *criteria: Criterion, above: int = 0) -> UidSet:
        """UIDs matching ``criteria``; ``above``: RFC 3501 makes ``n:*`` match the last
        message even when its UID is below n."""
        found = await self.conn.uid_search(*criteria)
        if above:
            found = UidSet.from_ranges(
                (max(lo, above + 1), hi) for lo, hi in found.ranges if hi > above
            )
        return found

    async def _compare_all(self, mailbox_id: str) -> UidSet:
        """Without QRESYNC: every UID and its flags, compared with the index."""
        result = await self.conn.execute(uid_fetch(from_uid(1), [Attr.UID, Attr.FLAGS]))
        upstream = {
            uid: item.flags
            for uid, item in fetches_from_raw(result.raw).items()
            if item.flags is not None
        }
        known = await self.store.uid_map(mailbox_id)
        self.writer.remove_later(mailbox_id, {u: e for u, e in known.items() if u not in upstream})
        await self.writer.set_flags(mailbox_id, {u: f for u, f in upstream.items() if u in known})
        return UidSet.of(u for u in upstream if u not in known)

    def _fetch_items(self) -> list[FetchAtt]:
        items: list[FetchAtt] = [Attr.UID, Attr.FLAGS, Attr.INTERNALDATE, Attr.SIZE]
        if self.strategy is EmailIds.OBJECTID:
            return [*items, Attr.EMAILID, Attr.THREADID]
        if self.strategy is EmailIds.X_GUID:
            return [*items, self._header_section(), Attr.X_GUID]
        return [*items, self._header_section()]

    def _header_section(self) -> BodySection:
        fields = tuple(self._header_fields())
        if self.strategy is EmailIds.X_GUID:
            # The fields serve threading only, which reads HEADER_SECTION_OCTETS of them: a
            # page of strangers' messages of megabytes of Subject fields is not fetched whole.
            # (With digest ids they are the ids' material, which must stay what it was.)
            return BodySection(fields=fields, partial=(0, HEADER_SECTION_OCTETS))
        return BodySection(fields=fields)

    def _fetch(self, uids: str) -> asyncio.Future[Result]:
        """The UID FETCH of new messages, sent now and read as its answer comes."""
        return asyncio.ensure_future(self.conn.execute(uid_fetch(uids, self._fetch_items())))

    async def _index_new(
        self, mailbox_id: str, result: Result, *, overlap: bool = False
    ) -> dict[int, str]:
        """Index the messages of a UID FETCH answer; returns the new emails among them by
        UID. ``overlap``: its script may still run when this returns (add_copies, ahead)."""
        # Only messages answered in full: a flag update another session caused may name a
        # message that was expunged meanwhile.
        fetched = [f for f in fetches_from_raw(result.raw).values() if f.items.keys() >= _REQUIRED]
        if self.strategy is EmailIds.OBJECTID:
            native = [c for c in (self._native(f) for f in fetched) if c is not None]
            created = await self.writer.add_copies(mailbox_id, native, ahead=overlap)
            return _created(native, created)
        # Under the key asked for, unless the server spells the field list otherwise.
        asked = fetch_key(str(self._header_section()))
        headers = [_bytes_or_none(f.items.get(asked)) or f.header_fields() or b"" for f in fetched]
        links = await sized(sum(map(parse_cost, headers)), _links, headers)
        # The threads the previous chunk made must be read back: its script first.
        await self.writer.settle()
        await self.threader.prepare(links)
        copies = []
        for item, header, link in zip(fetched, headers, links, strict=True):
            email_id = self._own_id(item, header)
            copies.append(self._copy(item, email_id, self.threader.assign(email_id, link)))
        refs, subjects = self.threader.take_writes()
        created = await self.writer.add_copies(mailbox_id, copies, refs, subjects, ahead=overlap)
        return _created(copies, created)

    def _header_fields(self) -> Sequence[str]:
        return THREAD_FIELDS if self.strategy is EmailIds.X_GUID else DIGEST_FIELDS

    def _own_id(self, item: FetchItem, header: bytes) -> str:
        guid = item.x_guid if self.strategy is EmailIds.X_GUID else None
        if guid:
            return _short_id("x", guid.encode())
        return _short_id("d", header + b"\0" + str(item.size).encode())

    def _native(self, item: FetchItem) -> NewCopy | None:
        email_id = item.email_id
        if email_id is None or not OBJECT_ID.fullmatch(email_id):
            return None
        thread_id = item.thread_id
        if thread_id is None or not OBJECT_ID.fullmatch(thread_id):
            thread_id = thread_id_for(email_id)
        return self._copy(item, email_id, thread_id)

    def _copy(self, item: FetchItem, email_id: str, thread_id: str) -> NewCopy:
        if item.known is not None:
            # Read with the response (a first sync's, nearly always).
            return NewCopy(item.known[0], email_id, *item.known[1:], thread_id)
        uid, flags, size = item.uid, item.flags, item.size
        received = item.internaldate_seconds
        if uid is None or flags is None or received is None or size is None:
            raise ProtocolError("FETCH lacks UID, FLAGS, INTERNALDATE or RFC822.SIZE")
        return NewCopy(uid, email_id, flags, received, size, thread_id)
