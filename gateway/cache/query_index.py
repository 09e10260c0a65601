"""Sorted sets that answer the common filtered Email/query windows without reading records.

Today's by-date sets (``dated``, ``dated:<mailboxId>``) answer "a folder newest first". The
next most asked lists are sparse subsets of them, and one other order:

* ``unseen:<mailboxId>``: a folder's visible emails without ``$seen``, by receivedAt: "unread
  in INBOX";
* ``flagged[:<mailboxId>]``: those with ``$flagged`` (the account's, or one folder's):
  "flagged in INBOX", "flagged anywhere".

These and the by-date sets are chunked sorted sets (gateway.cache.chunked_set: listpack
chunks of at most 128 members and a directory; a window is one read script). Both are kept
in the same script as the records (IndexBatch.follow_queries) by every write path, from each
email's view before and after. They cost Redis only for the emails they hold: mail clients
read most mail and flag little (bench.seed: 30 % unread, 5 % flagged).
Unread across the whole account has no set: it would cost as much again as the folders' unread
sets (every unread email twice) for a list clients show per folder; it takes the general path.
``$draft`` and ``$answered`` get none: no client lists by them, and a set that may hold most of
a folder (``$answered`` in a sent folder) would cost what the dated set does. A query on them
takes the general path.

* ``sized:<mailboxId>``: a folder's emails by size, built only when a client first sorts that
  folder by size (a copy of the folder's membership with sizes from the records), expiring
  after SIZED_IDLE_SECONDS without such a query, and kept right while it exists with
  ``zadd_present`` (an email joining the folder is added only if the set exists) and ZREM.
  A plain zset: it exists only while someone sorts by size, and is read by the same script.

Members are email ids, so equal scores order by id, as the general path breaks ties (by id,
in the first comparator's direction): both ways of answering give the same ids in the same
order. Collapsed threads need no structure: a window of heads is read by walking the same sets
in order and keeping each thread's first email (bounded by MAX_COLLAPSE_SCAN).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import AsyncGenerator, Iterable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Final, Protocol

from gateway.cache.changes import format_state
from gateway.cache.chunked_set import SetAbsent, Slice, Unsettled
from gateway.cache.emails import EMAIL, EmailStore
from gateway.cache.keys import AccountKeys

# A size order nobody asked for within this long is dropped (it is rebuilt on demand).
SIZED_IDLE_SECONDS: Final = 3600
# A half-written size order left by a crashed build goes after this long.
BUILD_SECONDS: Final = 300
# Records read and members written per round trip while building a size order.
BUILD_PAGE: Final = 1000
# Emails a collapsed window may walk before the general path answers instead.
MAX_COLLAPSE_SCAN: Final = 5000
# Members read per round trip while walking for a collapsed window.
COLLAPSE_PAGE: Final = 200


class Subset(enum.Enum):
    """The emails a by-date set holds (of the account, or of one folder)."""

    ALL = "dated"
    UNSEEN = "unseen"  # without $seen (only a folder's)
    FLAGGED = "flagged"  # with $flagged


@dataclass(frozen=True)
class QueryKeys:
    """The names of the query structures of one account (under its hash tag)."""

    keys: AccountKeys

    def unseen(self, mailbox_id: str) -> str:
        return f"{self.keys.base}:unseen:{mailbox_id}"

    def flagged(self, mailbox_id: str | None = None) -> str:
        return self._scoped("flagged", mailbox_id)

    def sized(self, mailbox_id: str) -> str:
        return f"{self.keys.base}:sized:{mailbox_id}"

    def sized_build(self, mailbox_id: str, token: str) -> str:
        return f"{self.keys.base}:sized-build:{mailbox_id}:{token}"

    def _scoped(self, name: str, mailbox_id: str | None) -> str:
        return (
            f"{self.keys.base}:{name}"
            if mailbox_id is None
            else f"{self.keys.base}:{name}:{mailbox_id}"
        )


def query_part_keys(keys: AccountKeys, mailbox_ids: Iterable[str]) -> list[str]:
    """The size orders of the account's folders (plain zsets), for a reset of its email part
    (index_format)."""
    names = QueryKeys(keys)
    return [names.sized(m) for m in mailbox_ids]


def query_set_names(keys: AccountKeys, mailbox_ids: Iterable[str]) -> list[str]:
    """The chunked sparse sets of the account and its folders (gateway.cache.chunked_set:
    names, each the prefix of its keys), for the same reset."""
    names = QueryKeys(keys)
    folders = list(mailbox_ids)
    return [names.flagged(), *(key(m) for key in (names.unseen, names.flagged) for m in folders)]


class QueryPresence(Protocol):
    """What the structures need of one visible email's side (gateway.sync.tallies.Presence)."""

    @property
    def mailboxes(self) -> tuple[str, ...]: ...

    @property
    def seen(self) -> bool: ...

    @property
    def flagged(self) -> bool: ...


class QueryMove(Protocol):
    """One email's change as a batch saw it (gateway.sync.tallies.Move)."""

    @property
    def email_id(self) -> str: ...

    @property
    def received_at(self) -> int: ...

    @property
    def size(self) -> int: ...

    @property
    def before(self) -> QueryPresence | None: ...

    @property
    def after(self) -> QueryPresence | None: ...


@dataclass
class QueryWrites:
    """The writes a batch's moves make to the query structures, grouped per set: the
    chunked sparse sets (gateway.cache.chunked_set) take members with their receivedAt both
    ways, the size orders are plain zsets."""

    chunk_adds: dict[str, dict[str, int]] = field(default_factory=dict)
    chunk_removes: dict[str, dict[str, int]] = field(default_factory=dict)
    present_adds: dict[str, dict[str, int]] = field(default_factory=dict)  # zadd_present
    removes: dict[str, list[str]] = field(default_factory=dict)  # ZREM


def _memberships(keys: QueryKeys, presence: QueryPresence | None) -> set[str]:
    """The sparse sets an email is in, given its visible side (None: not visible)."""
    if presence is None:
        return set()
    found: set[str] = set()
    if not presence.seen:
        found.update(keys.unseen(m) for m in presence.mailboxes)
    if presence.flagged:
        found.add(keys.flagged())
        found.update(keys.flagged(m) for m in presence.mailboxes)
    return found


def query_writes(keys: QueryKeys, moves: Iterable[QueryMove]) -> QueryWrites:
    """What ``moves`` change in the sparse sets and the size orders."""
    writes = QueryWrites()
    for move in moves:
        before = _memberships(keys, move.before)
        after = _memberships(keys, move.after)
        for key in after - before:
            writes.chunk_adds.setdefault(key, {})[move.email_id] = move.received_at
        for key in before - after:
            writes.chunk_removes.setdefault(key, {})[move.email_id] = move.received_at
        was = set(move.before.mailboxes) if move.before else set()
        now = set(move.after.mailboxes) if move.after else set()
        for mailbox_id in now - was:
            writes.present_adds.setdefault(keys.sized(mailbox_id), {})[move.email_id] = move.size
        for mailbox_id in was - now:
            writes.removes.setdefault(keys.sized(mailbox_id), []).append(move.email_id)
    return writes


@dataclass(frozen=True)
class Page:
    """A window of a query's results: where it starts, its ids, the total, the Email state."""

    position: int
    ids: list[str]
    total: int
    state: str


class AnchorNotFound(Exception):
    """RFC 8620 5.5: the anchor is not in the results."""


class Unanswered(Exception):
    """The structures cannot answer this window cheaply: the general path must."""


# Renames a finished size order into place only if no email changed since its snapshot
# (every write that moves an email in or out of a folder moves the Email modseq).
_PUBLISH_SIZED = """
if (redis.call('HGET', KEYS[1], ARGV[1]) or '0') ~= ARGV[2] then
  redis.call('DEL', KEYS[2])
  return 0
end
redis.call('RENAME', KEYS[2], KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
return 1
"""


class QueryIndex:
    """Reads windows of one account's query structures (and builds the lazy ones)."""

    def __init__(self, store: EmailStore) -> None:
        self.store = store
        self.client = store.client
        self.keys = QueryKeys(store.keys)

    def dated_key(self, subset: Subset, mailbox_id: str | None) -> str | None:
        """The by-date sorted set of ``subset`` of the account's (or a folder's) emails; None
        for one that is not kept (unread across the account)."""
        if subset is Subset.ALL:
            return self.store.keys.dated(mailbox_id)
        if subset is Subset.FLAGGED:
            return self.keys.flagged(mailbox_id)
        return None if mailbox_id is None else self.keys.unseen(mailbox_id)

    async def window(
        self,
        key: str,
        *,
        ascending: bool,
        position: int,
        anchor: str | None,
        anchor_offset: int,
        limit: int | None,
        sized: bool = False,
    ) -> Page:
        """A window of set ``key`` (RFC 8620 5.5: a negative position counts from the end;
        an anchor plus anchorOffset, clamped to 0, replaces the position), with its total
        and the Email state, in one script (gateway.cache.chunked_set.read_window).

        ``sized``: the key is a lazily built size order (a plain zset) whose idle expiry is
        pushed back; :class:`Unanswered` (nothing read) if it does not exist, or if a whole
        set (no ``limit``) kept changing while read."""
        try:
            found = await self.store.read_set(
                key,
                ascending=ascending,
                position=position,
                anchor=anchor,
                anchor_offset=anchor_offset,
                limit=limit,
                plain=sized,
                refresh=SIZED_IDLE_SECONDS if sized else None,
            )
        except (SetAbsent, Unsettled):
            raise Unanswered(key) from None
        if found is None:
            raise AnchorNotFound(anchor)
        return Page(found.position, found.ids, found.total, await self._state(found))

    async def sized_window(
        self,
        mailbox_id: str,
        *,
        ascending: bool,
        position: int,
        anchor: str | None,
        anchor_offset: int,
        limit: int | None,
    ) -> Page:
        """A window of a folder by size, the size order built first if it is not there.

        :class:`Unanswered` if emails kept changing while it was built."""
        key = self.keys.sized(mailbox_id)
        for _ in range(2):
            try:
                return await self.window(
                    key,
                    ascending=ascending,
                    position=position,
                    anchor=anchor,
                    anchor_offset=anchor_offset,
                    limit=limit,
                    sized=True,
                )
            except Unanswered:
                if not await self.build_sized(mailbox_id):
                    # An empty folder has no set to keep (Redis drops an empty zset).
                    return await self.window(
                        self.store.keys.dated(mailbox_id),
                        ascending=ascending,
                        position=position,
                        anchor=anchor,
                        anchor_offset=anchor_offset,
                        limit=limit,
                    )
        raise Unanswered(key)

    async def build_sized(self, mailbox_id: str) -> bool:
        """Build a folder's size order from its by-date set and the records' sizes; False if
        the folder is empty. :class:`Unanswered` if an email changed meanwhile.

        Sizes never change (an email id names the same octets), so only the membership must
        be the one of a single moment: the members and the Email modseq are read together,
        the set is written aside in pages, and a script renames it into place only if the
        modseq is still the same. From then on every batch keeps it with zadd_present."""
        dated = self.store.keys.dated(mailbox_id)
        try:
            every = await self.store.dated_slice(mailbox_id)
        except Unsettled:
            raise Unanswered(dated) from None
        ids = every.ids
        if not ids:
            return False
        aside = self.keys.sized_build(mailbox_id, secrets.token_hex(8))
        for part in _pages(ids, BUILD_PAGE):
            records = await self.store.records(part)
            if len(records) != len(part):
                await self.client.delete(aside)
                raise Unanswered(dated)
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.zadd(aside, {i: r.size for i, r in records.items()})
                pipe.expire(aside, BUILD_SECONDS)
                await pipe.execute()
        published = await self.client.eval(
            _PUBLISH_SIZED,
            3,
            self.store.keys.state,
            aside,
            self.keys.sized(mailbox_id),
            EMAIL,
            every.modseq,
            SIZED_IDLE_SECONDS,
        )
        if not published:
            raise Unanswered(dated)
        return True

    async def collapsed_window(
        self,
        key: str,
        *,
        ascending: bool,
        position: int,
        anchor: str | None,
        anchor_offset: int,
        limit: int | None,
        threads_total: str | None,
        calculate_total: bool,
    ) -> Page:
        """A window of the first email of each thread, walking sorted set ``key`` in order
        (RFC 8621 4.4.3: a thread's email that sorts first stands for it).

        ``threads_total``: the folder whose totalThreads counter is the number of threads
        in ``key`` (a whole folder), else the total is counted by walking to the end.
        :class:`Unanswered` past MAX_COLLAPSE_SCAN emails walked.

        The first page is read with the total and the state; it is sized for a window from
        the front (twice its end: threads rarely have two emails among the newest)."""
        wanted = None if limit is None or anchor is not None else max(0, position) + limit
        page = COLLAPSE_PAGE if wanted is None else min(COLLAPSE_PAGE, max(64, 2 * wanted))
        first = await self._slice(key, ascending, 0, page, threads_total)
        size = first.total
        state = await self._state(first)
        # The folder's totalThreads counter (index_batch: "<mailbox id>:t").
        counted = int(first.field or 0) if threads_total is not None else None
        walk_all = limit is None or (counted is None and (calculate_total or position < 0))
        if walk_all and size > MAX_COLLAPSE_SCAN:
            raise Unanswered(key)
        if position < 0 and anchor is None and counted is not None:
            position = max(0, counted + position)
            if position + (limit or 0) > MAX_COLLAPSE_SCAN:
                raise Unanswered(key)
        heads: list[str] = []
        threads: set[str] = set()
        anchored: int | None = None
        walk = self._walk(key, ascending, size, first.ids, page)
        async with aclosing(walk):
            async for email_id, thread_id in walk:
                if thread_id in threads:
                    continue
                threads.add(thread_id)
                heads.append(email_id)
                if email_id == anchor:
                    anchored = len(heads) - 1
                if (
                    not walk_all
                    and limit is not None
                    and _enough(heads, anchor, anchored, anchor_offset, position, limit)
                ):
                    break
        total = counted if counted is not None else len(heads)
        if anchor is not None:
            if anchored is None:
                raise AnchorNotFound(anchor)
            start = max(0, anchored + anchor_offset)
        else:
            start = max(0, len(heads) + position) if position < 0 else position
        stop = len(heads) if limit is None else start + limit
        return Page(start, heads[start:stop], total, state)

    async def _walk(
        self, key: str, ascending: bool, size: int, first: list[str], page: int
    ) -> AsyncGenerator[tuple[str, str], None]:
        """(email id, thread id) of the set's members in order from ``first`` (its first
        ``page``), a page per round trip, at most MAX_COLLAPSE_SCAN of them (then
        :class:`Unanswered`)."""
        start = 0
        while start < size:
            if start >= MAX_COLLAPSE_SCAN:
                raise Unanswered(key)
            if start == 0:
                ids = first
            else:
                page = COLLAPSE_PAGE
                ids = (await self._slice(key, ascending, start, page, None)).ids
            start += page
            if not ids:
                return
            threads = await self.thread_ids(ids)
            for email_id in ids:
                # An email destroyed since the page was read is no longer a result.
                if email_id in threads:
                    yield email_id, threads[email_id]

    async def thread_ids(self, ids: list[str]) -> dict[str, str]:
        """The thread of each email still in the index (a thread id never changes)."""
        return {i: r.thread_id for i, r in (await self.store.records(ids)).items()}

    async def _slice(
        self, key: str, ascending: bool, position: int, limit: int, threads_total: str | None
    ) -> Slice:
        """``limit`` members of chunked set ``key`` from ``position`` (and the folder's
        totalThreads counter read with them, if ``threads_total`` names one)."""
        found = await self.store.read_set(
            key,
            ascending=ascending,
            position=position,
            anchor=None,
            anchor_offset=0,
            limit=limit,
            field=None if threads_total is None else (self.store.keys.counts, f"{threads_total}:t"),
        )
        if found is None:  # never without an anchor; for the type checker
            raise Unanswered(key)
        return found

    async def _state(self, found: Slice) -> str:
        if found.epoch is None:
            return await self.store.state.state(EMAIL)
        return format_state(found.epoch, found.modseq)


def _enough(
    heads: list[str],
    anchor: str | None,
    anchored: int | None,
    offset: int,
    position: int,
    limit: int,
) -> bool:
    """Whether the heads walked so far hold the whole window."""
    if anchor is None:
        return len(heads) >= position + limit
    return anchored is not None and len(heads) >= max(0, anchored + offset) + limit


def _pages(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
