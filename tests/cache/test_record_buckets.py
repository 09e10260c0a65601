"""Email records live in listpack-sized buckets found by linear hashing, growing by splits.

Random puts and deletes, in batches, against a plain dict as the model, on a single Redis and
on the 3-node cluster: after every batch the records read back equal the model, and with a
plain client each record sits in the bucket the documented hashing names (its id's last
eight octets in base 31, modulo 2^level or 2^(level+1) below the split pointer), decodes with
the documented layout and the mailbox numbers table, and every bucket is a listpack.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest

from gateway.cache.emails import EmailRecord, EmailStore, encode
from gateway.cache.index_batch import index_batch
from gateway.cache.store import Store
from tests.rediscluster import RedisClusterSet

FLAGS = ["\\Seen", "\\Flagged", "\\Answered", "\\Deleted", "$Forwarded", "$label1", "\\Draft"]
# Dovecot-like mailbox ids: "m" and 32 hex digits.
MAILBOXES = ["m" + secrets.token_hex(16) for _ in range(5)]
# The bits of the common flags, as the record layout documents them (gateway.cache.emails).
BITS = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Forwarded", "$MDNSent"]


@pytest.fixture(params=["single", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "single":
        url: str = request.getfixturevalue("redis_url")
    else:
        cluster: RedisClusterSet = request.getfixturevalue("redis_cluster")
        url = cluster.url
    store = Store.from_url(url)
    yield store
    await store.close()


def random_record(rng: random.Random, email_id: str, most: int = 2) -> EmailRecord:
    """One or two copies (``most``: up to that many), any flags: at most 64 octets encoded
    while ``most`` is 2."""
    copies: dict[str, dict[int, list[str]]] = {}
    for mailbox_id in rng.sample(MAILBOXES, rng.choice([1, 1, 1, most])):
        copies[mailbox_id] = {
            rng.randrange(1, 65_536): rng.sample(FLAGS, rng.choice([0, 1, 1, 2, 3]))
        }
    thread_id = "t" + secrets.token_hex(10)
    return EmailRecord(email_id, thread_id, rng.randrange(2**31), rng.randrange(10**7), copies)


def bucket_of(email_id: str, level: int, split: int) -> int:
    value = 0
    for octet in email_id.encode()[-8:]:
        value = value * 31 + octet
    bucket = value % (1 << level)
    return value % (1 << (level + 1)) if bucket < split else bucket


def plain_decode(data: bytes, names: dict[int, str]) -> dict[str, Any]:
    """The documented layout, decoded without the code under test."""
    thread_id, received_at, size, *flat = msgpack.unpackb(data)
    copies: dict[str, dict[int, set[str]]] = {}
    for k in range(0, len(flat), 3):
        value = flat[k + 2]
        bits, others = (value, []) if isinstance(value, int) else (value[0], value[1:])
        flags = {flag for n, flag in enumerate(BITS) if bits & (1 << n)} | set(others)
        copies.setdefault(names[flat[k]], {})[flat[k + 1]] = flags
    return {"thread": thread_id, "received": received_at, "size": size, "copies": copies}


def as_plain(record: EmailRecord) -> dict[str, Any]:
    return {
        "thread": record.thread_id,
        "received": record.received_at,
        "size": record.size,
        "copies": {m: {u: set(f) for u, f in uids.items()} for m, uids in record.copies.items()},
    }


async def test_records_match_a_dict_model_through_random_puts_deletes_and_splits(
    store: Store,
) -> None:
    rng = random.Random(16)
    emails = EmailStore(store.client, "a" + secrets.token_hex(4))
    keys, client = emails.keys, store.client
    model: dict[str, EmailRecord] = {}
    next_id = 0
    for round_number in range(14):
        puts: dict[str, EmailRecord] = {}
        for _ in range(rng.randrange(150, 450)):
            if model and rng.random() < 0.3:
                email_id = rng.choice(list(model))  # an update of a known record
            else:
                next_id += 1
                email_id = f"x{next_id:05d}{secrets.token_hex(8)}"
            puts[email_id] = random_record(rng, email_id)
        drops = rng.sample(list(model), min(len(model), rng.randrange(0, 120)))
        async with index_batch(emails) as batch:
            batch.put_records(puts.values())
            batch.drop_records([*drops, "never-there"])
            if round_number % 3 == 0:  # a put dropped in the same batch is dropped
                late = next(iter(puts))
                batch.drop_records([late])
        model.update(puts)
        for email_id in drops:
            model.pop(email_id, None)
        if round_number % 3 == 0:
            model.pop(late, None)

        # Through the store: the records, their count and ids.
        absent = [f"y{n}" for n in range(5)]
        # (A copy's flags are a set, RFC 9051 2.3.2: their order is not kept.)
        found = await emails.records([*model, *absent])
        assert {i: as_plain(r) for i, r in found.items()} == {
            i: as_plain(r) for i, r in model.items()
        }
        assert await emails.count() == len(model)
        assert sorted(await emails.all_ids()) == sorted(model)

        # With plain commands: each record in its bucket, decoded with the plain table.
        level, split, count = (
            int(v or 0)
            for v in await client.hmget(
                keys.meta, ["records-level", "records-split", "records-count"]
            )
        )
        numbers = await client.hgetall(keys.mailbox_numbers)
        names = {int(v): k.decode() for k, v in numbers.items() if k not in (b"*", b"+")}
        assert len(set(names.values())) == len(names) == len(numbers) - 2
        assert set(names.values()) >= {m for r in model.values() for m in r.copies}
        buckets = [keys.record_bucket(n) for n in range((1 << level) + split)]
        sizes = [int(await client.hlen(b)) for b in buckets]
        assert sum(sizes) == count == len(model)
        for email_id, record in model.items():
            raw = await client.hget(keys.record_bucket(bucket_of(email_id, level, split)), email_id)
            assert raw is not None and len(raw) <= 64
            assert plain_decode(raw, names) == as_plain(record)
        encodings = {await client.object("encoding", b) for b in buckets if await client.exists(b)}
        assert encodings == {b"listpack"}
        assert max(sizes) <= 128
    assert len(model) > 2000 and level >= 5  # the table split many times


def test_a_usual_dovecot_record_fits_a_listpack_value() -> None:
    """Redis keeps a bucket compact only while every value is at most 64 octets."""
    mailbox = "m" + "0" * 32
    record = EmailRecord(
        "x" + "a" * 20,
        "t" + "b" * 20,
        1_765_000_000,
        2_500_000,
        {mailbox: {250_000: ["\\Seen", "\\Flagged", "$Forwarded"]}},
    )
    assert len(encode(record, {mailbox: 1})) <= 40
    two = EmailRecord(
        record.id,
        record.thread_id,
        record.received_at,
        record.size,
        {mailbox: {250_000: ["\\Seen"]}, "m" + "1" * 32: {7: ["\\Seen", "$Junk"]}},
    )
    assert len(encode(two, {mailbox: 1, "m" + "1" * 32: 2})) <= 64


async def test_a_record_too_long_for_a_listpack_is_kept_all_the_same(store: Store) -> None:
    rng = random.Random(7)
    emails = EmailStore(store.client, "a" + secrets.token_hex(4))
    long = EmailRecord(
        "x-long",
        "t" + secrets.token_hex(10),
        5,
        7,
        {m: {n: ["\\Seen", f"$custom{n}", "$label1"]} for n, m in enumerate(MAILBOXES)},
    )
    others = [random_record(rng, f"x{n}") for n in range(200)]
    async with index_batch(emails) as batch:
        batch.put_records([long, *others])
    found = await emails.records(["x-long", "x7"])
    assert {i: as_plain(r) for i, r in found.items()} == {
        "x-long": as_plain(long),
        "x7": as_plain(others[7]),
    }
    assert await emails.count() == 201


async def test_a_long_list_of_ids_is_read_in_pages_with_every_record_found(store: Store) -> None:
    rng = random.Random(9)
    emails = EmailStore(store.client, "a" + secrets.token_hex(4))
    kept = [random_record(rng, f"x{n}") for n in range(300)]
    async with index_batch(emails) as batch:
        batch.put_records(kept)
    asked = [f"absent{n}" for n in range(11_000)]
    for n, record in enumerate(kept):
        asked.insert(n * 37, record.id)  # spread over the pages of RECORD_READ_PAGE ids
    found = await emails.records(asked)
    assert {i: as_plain(r) for i, r in found.items()} == {r.id: as_plain(r) for r in kept}


async def test_a_crowded_bucket_splits_whole_however_many_entries_it_holds(
    store: Store,
) -> None:
    """A bucket holding far more entries than Lua's unpack() takes at once (about 8,000
    values): the split that the next write starts moves them all, in slices, and the batch
    is written whole (before, the split failed after deleting the bucket)."""
    rng = random.Random(7)
    emails = EmailStore(store.client, "a" + secrets.token_hex(4))
    keys, client = emails.keys, store.client
    async with index_batch(emails) as batch:  # the table of one bucket, and the numbers
        batch.put_records([random_record(rng, "n000000", most=1)])
    value = await client.hget(keys.record_bucket("0"), "n000000")
    assert value is not None
    crowd = [f"c{n:06d}" for n in range(10_000)]
    # Written straight into bucket 0, as a crowd of colliding ids would end up; the table's
    # count says so.
    for start in range(0, len(crowd), 1000):
        part = dict.fromkeys(crowd[start : start + 1000], value)
        await client.hset(keys.record_bucket("0"), mapping=part)
    await client.hset(keys.meta, "records-count", len(crowd) + 1)
    async with index_batch(emails) as batch:
        batch.put_records([random_record(rng, "n000001", most=1)])
    ids = await emails.all_ids()
    assert sorted(ids) == sorted([*crowd, "n000000", "n000001"])
    assert await emails.count() == len(crowd) + 2
