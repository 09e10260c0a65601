"""Mailbox numbers: one number per id under concurrent writers, and a stale cache never used.

Two processes (each with its own cache and connection) number overlapping mailbox ids at
the same time: the table read back with a plain client is a one-to-one map, and what each
process was told agrees with it. Then the table is made anew behind a process's back (as a
reset or a flushed Redis would): its cached copy decodes nothing and encodes nothing.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import secrets
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest

from gateway.cache.emails import EmailRecord, EmailStore
from gateway.cache.index_batch import index_batch
from gateway.cache.index_format import ensure_current
from gateway.cache.keys import INDEX_FORMAT, INDEX_FORMAT_FIELD, AccountKeys
from gateway.cache.mailbox_numbers import MailboxNumbers, StaleNumbers, UnknownNumber
from gateway.cache.store import Store

IDS = [f"m{n:032x}" for n in range(120)]


def number_in_process(
    url: str, account: str, seed: int, queue: multiprocessing.Queue, start: Any
) -> None:
    """A writer of its own: numbers all of IDS in a random order, in random small groups."""

    async def run() -> dict[str, int]:
        store = Store.from_url(url)
        await store.client.ping()
        start.wait(30)  # both connected: they write at the same time
        numbers = MailboxNumbers(store.client, EmailStore(store.client, account).keys)
        rng = random.Random(seed)
        told: dict[str, int] = {}
        order = rng.sample(IDS, len(IDS))
        while order:
            size = rng.randrange(1, 6)
            group, order = order[:size], order[size:]
            numbering = await numbers.assign(group)
            told.update((m, numbering.by_id[m]) for m in group)
            numbers.forget()  # ask Redis every time, as a fresh process would
        await store.close()
        return told

    queue.put(asyncio.run(run()))


async def test_two_writers_never_give_one_number_two_ids(redis_url: str) -> None:
    account = "a" + secrets.token_hex(4)
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = context.Queue()
    start = context.Barrier(2)
    workers = [
        context.Process(target=number_in_process, args=(redis_url, account, seed, queue, start))
        for seed in (1, 2)
    ]
    for worker in workers:
        worker.start()
    told = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(10)
        assert worker.exitcode == 0
    store = Store.from_url(redis_url)
    try:
        raw = await store.client.hgetall(EmailStore(store.client, account).keys.mailbox_numbers)
    finally:
        await store.close()
    table = {k.decode(): int(v) for k, v in raw.items() if k not in (b"*", b"+")}
    assert sorted(table) == IDS
    assert sorted(table.values()) == list(range(1, len(IDS) + 1))  # one id each, none skipped
    assert int(raw[b"+"]) == len(IDS)
    assert told[0] == told[1] == table


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(redis_url)
    yield store
    await store.close()


def record(email_id: str, mailbox_id: str, uid: int) -> EmailRecord:
    return EmailRecord(email_id, "t" + email_id, 100, 200, {mailbox_id: {uid: ["\\Seen"]}})


async def made_anew(
    store: Store, keys: AccountKeys, generation: str, table: dict[str, int]
) -> None:
    """What another process leaves after Redis lost the account's keys: a new table."""
    await store.client.delete(*await store.client.keys(f"{keys.base}:*"))
    await store.client.hset(
        keys.mailbox_numbers, mapping={"*": generation, "+": len(table), **table}
    )


async def test_a_table_made_anew_is_never_decoded_or_encoded_with_a_stale_cache(
    store: Store,
) -> None:
    emails = EmailStore(store.client, "a" + secrets.token_hex(4))
    keys, client = emails.keys, store.client
    inbox, work = "m" + "1" * 32, "m" + "2" * 32
    async with index_batch(emails) as batch:
        batch.put_records([record("e1", inbox, 1), record("e2", work, 2)])
    cached = emails.numbers.cached()
    assert cached is not None and cached.by_id == {inbox: 1, work: 2}

    # The other way round now, and a record written with it by a plain client (one bucket:
    # the table is new): the stale cache would read it as in INBOX.
    await made_anew(store, keys, "anew", {work: 1, inbox: 2})
    e3 = msgpack.packb(["te3", 100, 200, 1, 3, 1])
    await client.hset(keys.record_bucket(0), "e3", e3)
    await client.hset(keys.meta, "records-count", 1)
    found = await emails.records(["e3", "e1"])
    assert list(found) == ["e3"] and found["e3"].copies == {work: {3: ["\\Seen"]}}
    numbering = emails.numbers.cached()
    assert numbering is not None and numbering.generation == "anew"

    # Made anew again: this process's "anew" copy would encode INBOX as 2 (Work now): the
    # write script refuses the batch, which writes nothing, and the copy is dropped.
    await made_anew(store, keys, "again", {inbox: 1, work: 2})
    with pytest.raises(StaleNumbers):
        async with index_batch(emails) as batch:
            batch.put_records([record("e4", inbox, 4)])
            batch.map_uids(inbox, {4: "e4"})
    assert await client.exists(keys.record_bucket(0), keys.uid_bucket(inbox, 0)) == 0
    assert emails.numbers.cached() is None
    # The next batch reads the table again.
    async with index_batch(emails) as batch:
        batch.put_records([record("e4", inbox, 4)])
    assert msgpack.unpackb(await client.hget(keys.record_bucket(0), "e4"))[3] == 1
    assert (await emails.records(["e4"]))["e4"].mailbox_ids == {inbox: True}


async def test_records_left_without_their_table_are_never_read_under_new_numbers(
    store: Store,
) -> None:
    """The table alone lost (evicted, deleted) while records remain: a new table would
    number the folders anew and the records would read as other folders' copies. Reads and
    writes refuse instead, and the index is marked for the format reset that rebuilds it."""
    emails = EmailStore(store.client, "a" + secrets.token_hex(4))
    keys, client = emails.keys, store.client
    inbox, work = "m" + "1" * 32, "m" + "2" * 32
    await client.hset(keys.meta, INDEX_FORMAT_FIELD, str(INDEX_FORMAT))
    async with index_batch(emails) as batch:
        batch.put_records([record("e1", inbox, 1), record("e2", work, 2)])
    await client.delete(keys.mailbox_numbers)
    emails.numbers.forget()  # another process, which never read the table

    with pytest.raises(UnknownNumber):
        await emails.records(["e1"])
    assert await client.hget(keys.meta, INDEX_FORMAT_FIELD) is None
    await client.hset(keys.meta, INDEX_FORMAT_FIELD, str(INDEX_FORMAT))
    with pytest.raises(UnknownNumber):
        async with index_batch(emails) as batch:
            batch.put_records([record("e3", work, 3)])
    assert await client.exists(keys.mailbox_numbers) == 0  # no table numbered anew
    assert await client.hget(keys.meta, INDEX_FORMAT_FIELD) is None
    assert await ensure_current(emails)  # the reset: the next catch-up re-indexes
    assert await emails.all_ids() == []
    async with index_batch(emails) as batch:
        batch.put_records([record("e3", work, 3)])
    assert (await emails.records(["e3"]))["e3"].mailbox_ids == {work: True}
