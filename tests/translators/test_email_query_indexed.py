"""Email/query's indexed windows (unread, flagged, a folder by size, collapsed threads) against
what a plain IMAP session reads (UID SEARCH UNSEEN / FLAGGED, FETCH of dates and sizes) and
against the general path, on Dovecot and Cyrus: seeded, then after changes another IMAP
session makes and after Email/set; every window form; queryChanges after each change; the
lazily built size order dropped and rebuilt; and two accounts kept apart."""

from __future__ import annotations

import imaplib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
import redis.asyncio

from gateway.cache import query_index
from gateway.cache.chunked_set import directory
from gateway.cache.emails import EmailStore
from gateway.cache.index_format import FORMAT_FIELD, ensure_current
from gateway.cache.keys import AccountKeys
from gateway.cache.query_index import QueryKeys, query_part_keys, query_set_names
from tests.conftest import fresh_jmap, gateway_settings, running_gateway
from tests.jmapclient import Jmap
from tests.rediscluster import RedisClusterSet
from tests.servers import Dovecot
from tests.translators.upstreams import Upstream, imap, ok, upstream

__all__ = ["imap", "upstream"]  # fixtures

# A condition every email meets that the indexed path does not recognise: the same query
# ANDed with it is answered by the general path (records read and filtered in Python).
GENERAL = {"minSize": 0}


def message(number: int, thread: int, reply: bool) -> bytes:
    """A message of thread ``thread``: its first, or a reply pointing at the first. Bodies of
    13 lengths, so messages of equal header length may have equal sizes (ties go by id)."""
    root = f"<t{thread:02d}.root@example.test>"
    lines = [
        f"Message-ID: <t{thread:02d}.{number:02d}@example.test>"
        if reply
        else f"Message-ID: {root}",
        f"Subject: {'Re: ' if reply else ''}Topic {thread:02d}",
        "From: sender@example.test",
        "To: reader@example.test",
        f"X-Key: m{number:02d}",
    ]
    if reply:
        lines += [f"In-Reply-To: {root}", f"References: {root}"]
    body = "x" * (100 + (number % 13) * 17)
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


def seed(client: imaplib.IMAP4) -> None:
    """INBOX: 30 messages in 12 threads, a third read, every fifth flagged, some pairs with
    the same INTERNALDATE; Kept: 6 more, some in INBOX's threads."""
    ok(client.create("Kept"))
    for number in range(36):
        thread = number % 12
        folder = "Kept" if number >= 30 else "INBOX"
        flags = [] if number % 3 == 0 else ["\\Seen"]
        if number % 5 == 0:
            flags.append("\\Flagged")
        hour = number - number % 4 if number % 4 == 1 else number  # same date as the one before
        date = f'"{1 + hour // 24:02d}-Mar-2024 {hour % 24:02d}:00:00 +0000"'
        raw = message(number, thread, number >= 12)
        ok(client.append(folder, f"({' '.join(flags)})", date, raw))


@dataclass
class Copy:
    key: str
    uid: str
    date: float
    size: int


_FETCHED = re.compile(rb"UID (\d+).*?INTERNALDATE \"([^\"]+)\".*?RFC822\.SIZE (\d+)", re.S)


def folder_truth(client: imaplib.IMAP4, folder: str) -> tuple[list[Copy], set[str], set[str]]:
    """A folder's visible messages (not \\Deleted), and the keys of its unread and flagged
    ones, as IMAP itself answers."""
    ok(client.select(folder, readonly=True))
    copies: list[Copy] = []
    data = ok(
        client.uid(
            "FETCH", "1:*", "(UID INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (X-KEY)])"
        )
    )
    for item in data:
        if not isinstance(item, tuple):
            continue
        found = _FETCHED.search(item[0])
        assert found, item
        key = item[1].decode().split(":", 1)[1].strip()
        when = datetime.strptime(found.group(2).decode(), "%d-%b-%Y %H:%M:%S %z").timestamp()
        copies.append(Copy(key, found.group(1).decode(), when, int(found.group(3))))
    by_uid = {c.uid: c.key for c in copies}

    def search(*criteria: str) -> set[str]:
        (line,) = ok(client.uid("SEARCH", *criteria, "UNDELETED"))
        return {by_uid[u] for u in line.decode().split()}

    visible = search("ALL")
    return [c for c in copies if c.key in visible], search("UNSEEN"), search("FLAGGED")


@dataclass
class Truth:
    """What the queries must answer, from IMAP and the emails' ids and threads."""

    inbox: str
    lists: dict[str, list[str]]


async def truth(upstream: Upstream, client: imaplib.IMAP4) -> Truth:
    listed = await upstream.jmap.call(
        "Email/get", ids=None, properties=["header:X-Key:asText", "threadId"]
    )
    ids = {e["header:X-Key:asText"].strip(): e["id"] for e in listed["list"]}
    threads = {e["id"]: e["threadId"] for e in listed["list"]}
    inbox, inbox_unread, inbox_flagged = folder_truth(client, "INBOX")
    archive, archive_unread, archive_flagged = folder_truth(client, "Kept")

    def by(copies: list[Copy], keep: set[str] | None, value: str, descending: bool) -> list[str]:
        # The general path's order: the value, then the id, both in the comparator's direction.
        rows = [(getattr(c, value), ids[c.key]) for c in copies if keep is None or c.key in keep]
        return [i for _, i in sorted(rows, reverse=descending)]

    def collapsed(ordered: list[str]) -> list[str]:
        seen: set[str] = set()
        return [i for i in ordered if not (threads[i] in seen or seen.add(threads[i]))]  # type: ignore[func-returns-value]

    everything = inbox + archive
    lists = {
        "unread": by(inbox, inbox_unread, "date", True),
        "unread-oldest": by(inbox, inbox_unread, "date", False),
        "flagged": by(inbox, inbox_flagged, "date", True),
        "flagged-anywhere": by(everything, inbox_flagged | archive_flagged, "date", True),
        "unread-anywhere": by(everything, inbox_unread | archive_unread, "date", True),
        "size-up": by(inbox, None, "size", False),
        "size-down": by(inbox, None, "size", True),
        "collapsed": collapsed(by(inbox, None, "date", True)),
        "collapsed-oldest": collapsed(by(inbox, None, "date", False)),
        "collapsed-unread": collapsed(by(inbox, inbox_unread, "date", True)),
        "collapsed-anywhere": collapsed(by(everything, None, "date", True)),
    }
    return Truth(await folder_id(upstream.jmap, "INBOX"), lists)


def queries(inbox: str) -> dict[str, dict[str, Any]]:
    """The Email/query arguments of each list of :func:`truth`."""
    newest = [{"property": "receivedAt", "isAscending": False}]
    oldest = [{"property": "receivedAt", "isAscending": True}]
    return {
        "unread": {"filter": {"inMailbox": inbox, "notKeyword": "$seen"}},
        "unread-oldest": {"filter": {"inMailbox": inbox, "notKeyword": "$seen"}, "sort": oldest},
        "flagged": {"filter": {"inMailbox": inbox, "hasKeyword": "$flagged"}, "sort": newest},
        "flagged-anywhere": {"filter": {"hasKeyword": "$flagged"}},
        "unread-anywhere": {"filter": {"notKeyword": "$seen"}},
        "size-up": {"filter": {"inMailbox": inbox}, "sort": [{"property": "size"}]},
        "size-down": {
            "filter": {"inMailbox": inbox},
            "sort": [{"property": "size", "isAscending": False}],
        },
        "collapsed": {"filter": {"inMailbox": inbox}, "collapseThreads": True},
        "collapsed-oldest": {
            "filter": {"inMailbox": inbox},
            "sort": oldest,
            "collapseThreads": True,
        },
        "collapsed-unread": {
            "filter": {"inMailbox": inbox, "notKeyword": "$seen"},
            "collapseThreads": True,
        },
        "collapsed-anywhere": {"collapseThreads": True},
    }


def general(args: dict[str, Any]) -> dict[str, Any]:
    """The same query, answered by the general path."""
    condition = args.get("filter")
    conditions = [GENERAL] if condition is None else [condition, GENERAL]
    return {**args, "filter": {"operator": "AND", "conditions": conditions}}


def windows(ids: list[str]) -> list[tuple[dict[str, Any], int, list[str]]]:
    """Window arguments and what RFC 8620 5.5 makes of them: (args, position, ids)."""
    n = len(ids)
    cases: list[tuple[dict[str, Any], int, list[str]]] = [
        ({"position": 2, "limit": 3}, 2, ids[2:5]),
        ({"position": -3}, max(0, n - 3), ids[max(0, n - 3) :]),
        ({"position": -100, "limit": 2}, 0, ids[:2]),
        ({"position": n + 5}, n + 5, []),
        ({"limit": 0}, 0, []),
    ]
    if ids:
        k = min(3, n - 1)
        cases += [
            (
                {"anchor": ids[k], "anchorOffset": -2, "limit": 3},
                max(0, k - 2),
                ids[max(0, k - 2) : max(0, k - 2) + 3],
            ),
            ({"anchor": ids[0], "anchorOffset": 1}, 1, ids[1:]),
            (
                {"anchor": ids[-1], "anchorOffset": -10, "limit": 1},
                max(0, n - 11),
                ids[max(0, n - 11) : max(0, n - 11) + 1],
            ),
        ]
    return cases


async def check(
    upstream: Upstream, client: imaplib.IMAP4, windowed: bool = False
) -> dict[str, str]:
    """Every query agrees with IMAP and with the general path; returns the query states."""
    expected = await truth(upstream, client)
    states: dict[str, str] = {}
    for name, args in queries(expected.inbox).items():
        wanted = expected.lists[name]
        fast = await upstream.jmap.call("Email/query", calculateTotal=True, **args)
        slow = await upstream.jmap.call("Email/query", calculateTotal=True, **general(args))
        assert fast["ids"] == wanted, name
        assert slow["ids"] == wanted, name
        assert fast["total"] == len(wanted) and fast["position"] == 0, name
        assert fast["queryState"] == slow["queryState"], name
        states[name] = fast["queryState"]
        if not windowed:
            continue
        for window, position, ids in windows(wanted):
            got = await upstream.jmap.call("Email/query", calculateTotal=True, **args, **window)
            other = await upstream.jmap.call(
                "Email/query", calculateTotal=True, **general(args), **window
            )
            assert (got["position"], got["ids"], got["total"]) == (position, ids, len(wanted)), (
                name,
                window,
            )
            assert (other["position"], other["ids"]) == (position, ids), (name, window)
        missing = await upstream.jmap.request(("Email/query", {**args, "anchor": "nothere"}))
        assert missing[0][1]["type"] == "anchorNotFound", name
    return states


async def check_changes(
    upstream: Upstream, client: imaplib.IMAP4, old: dict[str, str], before: dict[str, list[str]]
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """After a change: the queries agree again, and queryChanges from the old states turns
    the old lists into the new ones (RFC 8620 5.6)."""
    states = await check(upstream, client)
    expected = await truth(upstream, client)
    for name, args in queries(expected.inbox).items():
        responses = await upstream.jmap.request(
            ("Email/queryChanges", {**args, "sinceQueryState": old[name], "calculateTotal": True})
        )
        kind, changes = responses[0][0], responses[0][1]
        if kind == "error":
            # RFC 8620 5.6: a server may always decline; collapsed threads do after a destroy.
            assert args.get("collapseThreads") and changes["type"] == "cannotCalculateChanges", (
                name,
                changes,
            )
            continue
        removed = set(changes["removed"])
        rebuilt = [i for i in before[name] if i not in removed]
        for item in sorted(changes["added"], key=lambda a: a["index"]):
            rebuilt.insert(item["index"], item["id"])
        assert rebuilt == expected.lists[name], name
        assert changes["total"] == len(expected.lists[name]), name
    return states, expected.lists


async def folder_id(jmap: Jmap, name: str) -> str:
    for path, mailbox in (await jmap.mailboxes()).items():
        if path == name or (name == "INBOX" and mailbox["role"] == "inbox"):
            return str(mailbox["id"])
    raise AssertionError(name)


def uid(client: imaplib.IMAP4, folder: str, key: str) -> str:
    ok(client.select(folder))
    (line,) = ok(client.uid("SEARCH", "HEADER", "X-Key", key))
    (found,) = line.decode().split()
    return str(found)


async def ids_by_key(jmap: Jmap) -> dict[str, str]:
    listed = await jmap.call("Email/get", ids=None, properties=["header:X-Key:asText"])
    return {e["header:X-Key:asText"].strip(): e["id"] for e in listed["list"]}


async def test_indexed_queries_follow_imap_and_email_set(
    upstream: Upstream, imap: imaplib.IMAP4, redis_url: str
) -> None:
    seed(imap)
    states = await check(upstream, imap, windowed=True)
    lists = (await truth(upstream, imap)).lists

    # Another IMAP session flags, unflags, reads and unreads.
    other = upstream.server.client(upstream.user)
    ok(other.select("INBOX"))
    ok(other.uid("STORE", uid(other, "INBOX", "m03"), "+FLAGS", "(\\Flagged)"))
    ok(other.uid("STORE", uid(other, "INBOX", "m04"), "-FLAGS", "(\\Seen)"))
    ok(other.uid("STORE", uid(other, "INBOX", "m05"), "-FLAGS", "(\\Flagged)"))
    ok(other.uid("STORE", uid(other, "INBOX", "m06"), "+FLAGS", "(\\Seen)"))
    states, lists = await check_changes(upstream, imap, states, lists)

    # It expunges one, marks another \Deleted without expunging, and moves both ways.
    ok(other.select("INBOX"))
    ok(other.uid("STORE", uid(other, "INBOX", "m09"), "+FLAGS", "(\\Deleted)"))
    ok(other.expunge())
    ok(other.uid("STORE", uid(other, "INBOX", "m12"), "+FLAGS", "(\\Deleted)"))
    ok(other.uid("MOVE", uid(other, "INBOX", "m15"), "Kept"))
    ok(other.uid("MOVE", uid(other, "Kept", "m30"), "INBOX"))
    states, lists = await check_changes(upstream, imap, states, lists)

    # The size order is dropped (as after idling), then rebuilt on the next query.
    account = upstream.jmap.account_id
    inbox = await folder_id(upstream.jmap, "INBOX")
    sized = QueryKeys(AccountKeys(account)).sized(inbox)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert 0 < await client.ttl(sized) <= query_index.SIZED_IDLE_SECONDS
        assert await client.delete(sized) == 1
        # New mail while it is gone: an unread flagged reply (the newest of its thread) and
        # a read message of a new thread.
        ok(
            other.append(
                "INBOX", "(\\Flagged)", '"09-Mar-2024 10:00:00 +0000"', message(40, 2, True)
            )
        )
        ok(
            other.append(
                "INBOX", "(\\Seen)", '"09-Mar-2024 11:00:00 +0000"', message(41, 13, False)
            )
        )
        states, lists = await check_changes(upstream, imap, states, lists)
        assert await client.exists(sized) == 1
    finally:
        await client.aclose()

    # Email/set: read one, flag one, move one to Kept, destroy one.
    ids = await ids_by_key(upstream.jmap)
    archive = await folder_id(upstream.jmap, "Kept")
    done = await upstream.jmap.call(
        "Email/set",
        update={
            ids["m00"]: {"keywords/$seen": True},
            ids["m01"]: {"keywords/$flagged": True, "keywords/$seen": None},
            ids["m18"]: {"mailboxIds": {archive: True}},
        },
        destroy=[ids["m21"]],
    )
    assert len(done["updated"]) == 3 and done["destroyed"] == [ids["m21"]], done
    await check_changes(upstream, imap, states, lists)
    await check(upstream, imap, windowed=True)
    other.logout()


async def test_collapsed_windows_past_the_walk_bound_take_the_general_path(
    upstream: Upstream, imap: imaplib.IMAP4, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window deeper than the walk may go is answered by the general path, the same."""
    seed(imap)
    before = await truth(upstream, imap)
    monkeypatch.setattr(query_index, "MAX_COLLAPSE_SCAN", 4)
    monkeypatch.setattr(query_index, "COLLAPSE_PAGE", 2)
    args = queries(before.inbox)["collapsed"]
    wanted = before.lists["collapsed"]
    for window, position, ids in windows(wanted):
        got = await upstream.jmap.call("Email/query", calculateTotal=True, **args, **window)
        assert (got["position"], got["ids"], got["total"]) == (position, ids, len(wanted)), window


async def test_two_accounts_never_see_each_others_entries(
    dovecot: Dovecot, http: Any, redis_url: str
) -> None:
    first = await fresh_jmap(dovecot, http)
    second = await fresh_jmap(dovecot, http)
    client = dovecot.client(first.username)
    seed(client)
    client.logout()
    other = dovecot.client(second.username)
    ok(other.append("INBOX", "(\\Seen)", '"01-Mar-2024 00:00:00 +0000"', message(50, 20, False)))
    other.logout()
    mine = set((await ids_by_key(first)).values())
    theirs = set((await ids_by_key(second)).values())
    inbox = await folder_id(first, "INBOX")
    other_inbox = await folder_id(second, "INBOX")
    for args in queries(other_inbox).values():
        # The other account's folder id, and whole-account queries: never the first's emails.
        found = await second.call("Email/query", **args)
        assert set(found["ids"]) <= theirs and not set(found["ids"]) & mine, args
    for args in queries(inbox).values():
        found = await second.call("Email/query", **args)
        assert not set(found["ids"]) & mine, args
        assert set((await first.call("Email/query", **args))["ids"]) <= mine, args


async def test_a_format_reset_drops_the_query_structures_and_reindexing_restores_them(
    jmap: Jmap, dovecot: Dovecot, redis_url: str
) -> None:
    client = dovecot.client(jmap.username)
    seed(client)
    upstream = Upstream(dovecot, jmap)
    await check(upstream, client)
    redis_client = redis.asyncio.Redis.from_url(redis_url)
    try:
        store = EmailStore(redis_client, jmap.account_id)
        folders = [await folder_id(jmap, "INBOX"), await folder_id(jmap, "Kept")]
        names = [
            *query_part_keys(store.keys, folders),
            *map(directory, query_set_names(store.keys, folders)),
        ]
        assert await redis_client.exists(*names) >= 4  # unseen and flagged sets, a size order
        await store.set_meta(FORMAT_FIELD, "0")
        assert await ensure_current(store)
        assert await redis_client.exists(*names) == 0
    finally:
        await redis_client.aclose()
    await check(upstream, client)
    client.logout()


async def test_on_a_redis_cluster(dovecot: Dovecot, redis_cluster: RedisClusterSet) -> None:
    """The structures' writes (in the batch script), windows, the size order's build and
    publication, and the collapsed walk within one account's hash tag on three nodes."""
    async with (
        running_gateway(gateway_settings(dovecot.url, redis_cluster.url)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        jmap = await fresh_jmap(dovecot, http)
        client = dovecot.client(jmap.username)
        seed(client)
        upstream = Upstream(dovecot, jmap)
        states = await check(upstream, client, windowed=True)
        lists = (await truth(upstream, client)).lists
        ok(client.select("INBOX"))
        ok(client.uid("STORE", uid(client, "INBOX", "m03"), "+FLAGS", "(\\Flagged)"))
        ok(client.uid("MOVE", uid(client, "INBOX", "m04"), "Kept"))
        await check_changes(upstream, client, states, lists)
        client.logout()
