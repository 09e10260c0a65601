"""An index written in an earlier format is reset once and re-indexed to the same answers.

The account is indexed by a real gateway, its answers recorded; then its Redis is turned
into what index format 2 wrote (one ``emails`` hash of records naming mailboxes by id) or
format 1 (that, and thread-keys sets, bare counts in thread-members, Email and Thread change
logs for the first indexing, no ``index-format``). ensure_current resets the
email part in one script, the next requests re-index it (an initial indexing), and every
answer (email, thread and mailbox ids, keywords, counts, queries) is the same, while a state
from before gets cannotCalculateChanges.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import redis

from gateway.cache.changes import AccountState
from gateway.cache.chunked_set import chunk_key, chunk_meta, directory
from gateway.cache.emails import EMAIL, THREAD, EmailStore
from gateway.cache.index_format import (
    FORMAT_FIELD,
    INDEX_FORMAT,
    NewerIndexFormat,
    ensure_current,
)
from gateway.cache.index_script import OpRecorder
from gateway.cache.keys import AccountKeys
from gateway.cache.store import Store
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.sync.test_thread_refs import message
from tests.translators.witness import Witness

LIST = ["threadId", "mailboxIds", "keywords", "receivedAt", "size", "subject"]


@pytest.fixture
def plain(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


async def answers(jmap: Jmap) -> dict[str, Any]:
    """What a client sees of the account's index, ids included."""
    query = await jmap.call("Email/query", calculateTotal=True)
    ids = query["ids"]
    emails = await jmap.call("Email/get", ids=ids, properties=LIST)
    thread_ids = sorted({e["threadId"] for e in emails["list"]})
    threads = await jmap.call("Thread/get", ids=thread_ids)
    mailboxes = await jmap.call("Mailbox/get")
    unread = await jmap.call("Email/query", filter={"notKeyword": "$seen"})
    collapsed = await jmap.call("Email/query", collapseThreads=True)
    flagged = await jmap.call("Email/query", filter={"hasKeyword": "$flagged"})
    # The folders' windows the by-date and sparse sets answer, each way.
    folders = {}
    for mailbox in mailboxes["list"]:
        for name, extra in (("all", {}), ("unread", {"notKeyword": "$seen"})):
            for ascending in (True, False):
                found = await jmap.call(
                    "Email/query",
                    filter={"inMailbox": mailbox["id"], **extra},
                    sort=[{"property": "receivedAt", "isAscending": ascending}],
                    calculateTotal=True,
                )
                folders[f"{mailbox['id']} {name} {ascending}"] = (found["ids"], found["total"])
        found = await jmap.call(
            "Email/query", filter={"inMailbox": mailbox["id"], "hasKeyword": "$flagged"}
        )
        folders[f"{mailbox['id']} flagged"] = (found["ids"], None)
    return {
        "ids": ids,
        "total": query["total"],
        "emails": sorted(emails["list"], key=lambda e: e["id"]),
        "threads": sorted(threads["list"], key=lambda t: t["id"]),
        "mailboxes": sorted(mailboxes["list"], key=lambda m: m["id"]),
        "unread": unread["ids"],
        "collapsed": collapsed["ids"],
        "flagged": flagged["ids"],
        "folders": folders,
    }


# The flags a format 3 record keeps as bits (gateway.cache.emails), in bit order.
BITS = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Forwarded", "$MDNSent"]


BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def member_id(value: str | bytes) -> str:
    """An email id as a format 4 member list holds it: a str, or the gateway's own form as
    its letter and 100 bits."""
    if isinstance(value, str):
        return value
    bits = int.from_bytes(value[1:], "big")
    return chr(value[0]) + "".join(BASE32[(bits >> s) & 31] for s in range(95, -1, -5))


def to_format_3(plain: redis.Redis, keys: AccountKeys) -> None:
    """Rewrite the account's thread table as index formats 2 and 3 kept threads: one
    ``threads`` hash (members, members per mailbox id, unread), ``thread-members`` (record
    count and the 12-octet thread-refs keys) and ``thread-subjects`` (the subjects
    themselves: only the reset reads these rewritten ones, so any text does)."""
    numbers = plain.hgetall(keys.mailbox_numbers)
    names = {int(v): k.decode() for k, v in numbers.items() if k not in (b"*", b"+")}
    fields: dict[bytes, bytes] = {}
    buckets = list(plain.scan_iter(match=keys.thread_bucket("*")))
    assert buckets
    for bucket in buckets:
        fields.update(plain.hgetall(bucket))
        plain.delete(bucket)
    pointing: dict[bytes, list[bytes]] = {}
    for bucket in plain.scan_iter(match=keys.thread_ref_bucket("*")):
        for ref, thread in plain.hgetall(bucket).items():
            pointing.setdefault(thread, []).append(ref)
    for name, value in fields.items():
        if name.startswith(b"r."):
            thread = name[2:]
            count = value.partition(b":")[0]
            plain.hset(keys.thread_members, thread, count + b":" + b"".join(pointing[thread]))
            plain.hset(keys.thread_subjects, thread, "old subject")
        elif b"." not in name:
            unread, flat, values = msgpack.unpackb(value[1:], raw=False)
            for k in range(1, value[0] + 1):
                values += msgpack.unpackb(fields[f"{k}.".encode() + name], raw=False)
            members = [[values[i], member_id(values[i + 1])] for i in range(0, len(values), 2)]
            mailboxes = {names[flat[i]]: flat[i + 1] for i in range(0, len(flat), 2)}
            old = msgpack.packb([members, mailboxes, unread], use_bin_type=True)
            plain.hset(keys.threads, name, old)
    plain.hdel(keys.meta, "threads-level", "threads-split", "threads-count", "threads-heads")
    plain.hset(keys.meta, FORMAT_FIELD, "3")


def records_to_format_2(plain: redis.Redis, keys: AccountKeys) -> None:
    """Rewrite the account's records as index format 2 left them: one ``emails`` hash of
    records naming mailboxes by id, no buckets, no mailbox numbers."""
    numbers = plain.hgetall(keys.mailbox_numbers)
    names = {int(v): k.decode() for k, v in numbers.items() if k not in (b"*", b"+")}
    buckets = list(plain.scan_iter(match=keys.record_bucket("*")))
    assert buckets
    for bucket in buckets:
        for email_id, value in plain.hgetall(bucket).items():
            thread_id, received_at, size, *flat = msgpack.unpackb(value)
            copies: dict[str, dict[int, list[str]]] = {}
            for k in range(0, len(flat), 3):
                flags = flat[k + 2]
                bits, others = (flags, []) if isinstance(flags, int) else (flags[0], flags[1:])
                listed = [f for n, f in enumerate(BITS) if bits & (1 << n)] + others
                copies.setdefault(names[flat[k]], {})[flat[k + 1]] = listed
            old = msgpack.packb([thread_id, received_at, size, copies], use_bin_type=True)
            plain.hset(keys.emails, email_id, old)
        plain.delete(bucket)
    plain.delete(keys.mailbox_numbers)
    plain.hdel(keys.meta, "records-level", "records-split", "records-count")


def to_format_1(plain: redis.Redis, keys: AccountKeys) -> None:
    """Rewrite the account's keys as index format 1 left them."""
    to_format_2(plain, keys)
    for thread, value in plain.hgetall(keys.thread_members).items():
        count, _, refs = value.partition(b":")
        plain.hset(keys.thread_members, thread, count)
        for start in range(0, len(refs), 12):
            plain.sadd(keys.thread_keys(thread.decode()), refs[start : start + 12])
    for email_id in plain.hkeys(keys.emails):
        plain.zadd(keys.changed(EMAIL), {email_id: 1})
        plain.zadd(keys.born(EMAIL), {email_id: 1})
    for thread in plain.hkeys(keys.threads):
        plain.zadd(keys.changed(THREAD), {thread: 1})
    for bucket in plain.scan_iter(match=keys.thread_ref_bucket("*")):
        plain.hset(keys.thread_refs, mapping=plain.hgetall(bucket))
        plain.delete(bucket)
    for bucket in plain.scan_iter(match=keys.uid_bucket("*", 0).rsplit(":", 2)[0] + ":*:*"):
        folder = bucket.decode().split(":")[-2]
        plain.hset(keys.uids(folder), mapping=plain.hgetall(bucket))
        plain.delete(bucket)
    plain.delete(*plain.keys(keys.uid_buckets("*")))
    plain.hdel(keys.meta, FORMAT_FIELD, "email-indexed", "floor:Email", "floor:Thread")
    plain.hdel(keys.meta, "refs-level", "refs-split", "refs-count")


@pytest.mark.parametrize("old_format", [1, 2, 3])
async def test_an_index_of_an_older_format_is_reset_once_and_answers_the_same(
    dovecot: Dovecot, jmap: Jmap, plain: redis.Redis, redis_url: str, old_format: int
) -> None:
    with Witness(dovecot, jmap.username) as witness:
        witness.create("Work")
        for folder, key, subject, parents, flags in (
            ("INBOX", "p", "Plans", (), "\\Seen"),
            ("INBOX", "r", "Re: Plans", ("p",), ""),
            ("Work", "b", "Budget", (), "\\Flagged"),
            ("Work", "l", "Lunch", (), "\\Seen"),
        ):
            raw = message(key, subject, parents)
            witness.ok(witness.imap.append(f'"{folder}"', f"({flags})", None, raw))
    before = await answers(jmap)
    assert before["total"] == 4
    # Taken before the rewrite: a request now would catch up, and so reset the index itself.
    old_state = (await jmap.call("Email/get", ids=[]))["state"]
    keys = AccountKeys(jmap.account_id)
    if old_format == 1:
        to_format_1(plain, keys)
        assert plain.keys(keys.thread_keys("*"))
    elif old_format == 2:
        to_format_2(plain, keys)
        assert plain.hlen(keys.emails) == 4
    else:
        to_format_3(plain, keys)
        assert plain.hlen(keys.threads) == 3
        assert plain.hlen(keys.thread_members) == plain.hlen(keys.thread_subjects) == 3

    store = Store.from_url(redis_url)
    try:
        emails = EmailStore(store.client, jmap.account_id)
        assert await ensure_current(emails)
        assert not await ensure_current(emails)  # once
        assert plain.hget(keys.meta, FORMAT_FIELD) == str(INDEX_FORMAT).encode()
        # The email part is gone, in one go; the mailboxes and the id strategy stay.
        assert plain.exists(keys.emails, keys.threads, directory(keys.dated()), keys.counts) == 0
        assert plain.exists(keys.mailbox_numbers) == 0
        assert plain.keys(keys.record_bucket("*")) == []
        assert plain.keys(keys.thread_bucket("*")) == []
        assert plain.exists(keys.thread_members, keys.thread_subjects) == 0
        assert plain.keys(keys.thread_keys("*")) == []
        assert plain.exists(keys.thread_refs, keys.uids("INBOX")) == 0
        assert plain.keys(f"jg:{{{jmap.account_id}}}:uids*") == []
        assert plain.exists(keys.changed(EMAIL), keys.born(EMAIL), keys.changed(THREAD)) == 0
        assert plain.hlen(keys.mailboxes) == len(before["mailboxes"])
        assert plain.hget(keys.meta, "email-ids") is not None
        assert not await emails.indexed()
        state = AccountState(store.client, jmap.account_id)
        assert (await state.state(EMAIL)) != old_state
    finally:
        await store.close()

    # Re-indexed by the next requests: the same ids, threads, keywords, counts and queries.
    assert await answers(jmap) == before
    assert plain.hget(keys.meta, "email-indexed") == b"1"
    changes = await jmap.request(("Email/changes", {"sinceState": old_state}))
    assert changes[0][0] == "error" and changes[0][1]["type"] == "cannotCalculateChanges"
    now = (await jmap.call("Email/get", ids=[]))["state"]
    unchanged = await jmap.call("Email/changes", sinceState=now)
    assert unchanged["created"] == unchanged["updated"] == unchanged["destroyed"] == []


def chunked_names(plain: redis.Redis, keys: AccountKeys) -> list[str]:
    """The names of the account's chunked sets (those with a directory)."""
    found = [k.decode() for k in plain.keys(keys.base + ":*#d")]
    return [k.removesuffix("#d") for k in found]


def to_format_2(plain: redis.Redis, keys: AccountKeys) -> list[str]:
    """Rewrite the account's chunked sets as index format 2 kept them: one plain zset under
    each set's name, its records (records_to_format_2) and threads (to_format_3). The names
    rewritten."""
    to_format_3(plain, keys)
    records_to_format_2(plain, keys)
    names = chunked_names(plain, keys)
    for name in names:
        members: dict[bytes, float] = {}
        for entry in plain.zrange(directory(name), 0, -1):
            chunk = chunk_key(name, entry.decode().rpartition("\0")[2])
            members.update(plain.zrange(chunk, 0, -1, withscores=True))
            plain.delete(chunk)
        plain.delete(directory(name), chunk_meta(name))
        plain.zadd(name, members)
    plain.hset(keys.meta, FORMAT_FIELD, "2")
    return names


async def test_an_index_of_format_2_is_reset_once_and_answers_the_same(
    dovecot: Dovecot, jmap: Jmap, plain: redis.Redis, redis_url: str
) -> None:
    with Witness(dovecot, jmap.username) as witness:
        witness.create("Work")
        for n in range(12):
            folder = "Work" if n % 3 == 0 else "INBOX"
            flags = ["\\Seen", "", "\\Flagged", "\\Seen \\Flagged"][n % 4]
            raw = message(f"k{n}", f"Subject {n}", ())
            date = f'"0{1 + n % 3}-Mar-2024 00:00:00 +0000"'  # equal dates on purpose
            witness.ok(witness.imap.append(f'"{folder}"', f"({flags})", date, raw))
    before = await answers(jmap)
    assert before["total"] == 12
    keys = AccountKeys(jmap.account_id)
    names = to_format_2(plain, keys)
    # dated, dated:<INBOX>, dated:<Work>, unseen and flagged of both, flagged.
    assert len(names) == 8
    assert plain.hlen(keys.emails) == 12
    assert all(plain.type(name) == b"zset" for name in names)

    store = Store.from_url(redis_url)
    try:
        emails = EmailStore(store.client, jmap.account_id)
        assert await ensure_current(emails)
        assert not await ensure_current(emails)
        assert plain.exists(*names) == 0  # the old plain zsets are gone
        assert plain.exists(keys.emails, keys.mailbox_numbers) == 0
        assert chunked_names(plain, keys) == []
    finally:
        await store.close()
    assert await answers(jmap) == before
    assert sorted(chunked_names(plain, keys)) == sorted(names)
    assert plain.exists(*names) == 0


async def test_an_index_of_a_newer_format_is_left_alone_and_requests_are_told_to_retry(
    dovecot: Dovecot, jmap: Jmap, plain: redis.Redis, redis_url: str
) -> None:
    """A rolling upgrade: a replica of an older release meets an index a newer one wrote. It
    must not reset it (the releases would reset each other's index back and forth) nor
    follow the upstream into it; its requests get serverUnavailable with Retry-After."""
    with Witness(dovecot, jmap.username) as witness:
        witness.ok(witness.imap.append("INBOX", "(\\Seen)", None, message("n1", "Newer", ())))
    before = await answers(jmap)
    keys = AccountKeys(jmap.account_id)
    newer = str(INDEX_FORMAT + 1)
    plain.hset(keys.meta, FORMAT_FIELD, newer)
    held = sorted(plain.keys(f"jg:{{{jmap.account_id}}}:*"))

    store = Store.from_url(redis_url)
    try:
        with pytest.raises(NewerIndexFormat):
            await ensure_current(EmailStore(store.client, jmap.account_id))
    finally:
        await store.close()
    body = {
        "using": list(jmap.using),
        "methodCalls": [["Email/query", {"accountId": jmap.account_id}, "q"]],
    }
    response = await jmap.http.post(
        "/jmap/api/",
        content=json.dumps(body),
        auth=jmap.auth,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    [(name, arguments, _)] = response.json()["methodResponses"]
    assert (name, arguments["type"]) == ("error", "serverUnavailable"), arguments
    assert f"format {newer}" in arguments["description"]
    assert int(response.headers["retry-after"]) > 0
    assert plain.hget(keys.meta, FORMAT_FIELD) == newer.encode()
    assert sorted(plain.keys(f"jg:{{{jmap.account_id}}}:*")) == held  # nothing reset

    plain.hset(keys.meta, FORMAT_FIELD, str(INDEX_FORMAT))  # the newer release rolled back
    assert await answers(jmap) == before


async def test_a_writer_of_another_format_writes_nothing(
    redis_url: str, plain: redis.Redis
) -> None:
    """The index script refuses a batch into an index marked with another format (a replica
    of another release), and writes into one not yet marked or marked with its own."""
    keys = AccountKeys("a-format")
    store = Store.from_url(redis_url)
    try:
        emails = EmailStore(store.client, keys.account_id)
        for marked, written in ((None, True), (str(INDEX_FORMAT), True), ("99", False)):
            plain.delete(keys.meta, keys.counts)
            if marked is not None:
                plain.hset(keys.meta, FORMAT_FIELD, marked)
            recorder = OpRecorder(emails.keys)
            recorder.hincrby(keys.counts, "INBOX:e", 1)
            if written:
                await recorder.run(store.client, None)
            else:
                with pytest.raises(redis.exceptions.ResponseError, match="format 99"):
                    await recorder.run(store.client, None)
            assert plain.hget(keys.counts, "INBOX:e") == (b"1" if written else None)
    finally:
        await store.close()
