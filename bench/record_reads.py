"""What the email records' bucketed layout costs on the warm read path, beside the old layout.

One redis-server; N email records (one copy each, Dovecot-like ids, ~70 % \\Seen) written by
the tree's index batch into ``records:<n>`` buckets (index format 3), and the same records
as index format 2 kept them: one ``emails`` hash of msgpack records naming mailboxes by id.
Two hashes of 100-octet values stand for the cached kinds the warm Email/get also reads.
Then, alternating in rounds so the machine's noise falls on both alike:

* the warm Email/get's read script of 50 random ids (records, two cached kinds, state): this
  tree's ``_READ_WITH_STATE`` against format 2's (its text as of c73f83f, kept below), in
  Redis CPU per call (``INFO commandstats`` usec_per_call of EVALSHA) and commands inside it;
* decoding the 50 records in Python (best of several timings of many calls);
* ``MEMORY USAGE`` (samples=0) of the records, octets per email.

Run: .venv/bin/python -m bench.record_reads [--count 10000] [--calls 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import timeit
from typing import Any

import redis

from bench.servers import local_redis
from gateway.cache.codec import pack, unpack
from gateway.cache.emails import _READ_WITH_STATE, EMAIL, EmailRecord, EmailStore, decode
from gateway.cache.index_batch import index_batch
from gateway.cache.store import Store

# Index format 2's read script (gateway/cache/emails.py at c73f83f): the records are one
# hash among the hashes read.
FORMAT_2_READ = """
local out = {}
for k = 3, #KEYS do
  local values = {}
  for first = 2, #ARGV, 1000 do
    local part = redis.call('HMGET', KEYS[k], unpack(ARGV, first, math.min(first + 999, #ARGV)))
    for i = 1, #part do values[#values + 1] = part[i] end
  end
  out[#out + 1] = values
end
out[#out + 1] = redis.call('HGET', KEYS[1], ARGV[1])
out[#out + 1] = redis.call('HGET', KEYS[2], 'epoch')
return out
"""
WANTED = 50
KINDS = ("summary", "preview")


def make_records(count: int, rng: random.Random) -> list[EmailRecord]:
    inbox = "m" + secrets.token_hex(16)
    return [
        EmailRecord(
            "x" + secrets.token_hex(10),
            "t" + secrets.token_hex(10),
            1_765_000_000 - n * 60,
            rng.randrange(2_000, 60_000),
            {inbox: {n + 1: ["\\Seen"] if rng.random() < 0.7 else []}},
        )
        for n in range(count)
    ]


async def fill(url: str, emails_account: str, records: list[EmailRecord]) -> None:
    store = Store.from_url(url)
    try:
        emails = EmailStore(store.client, emails_account)
        for start in range(0, len(records), 500):
            async with index_batch(emails) as batch:
                batch.put_records(records[start : start + 500])
    finally:
        await store.close()


def main(count: int, calls: int, rounds: int) -> None:
    rng = random.Random(16)
    records = make_records(count, rng)
    ids = [r.id for r in records]
    account = "abench"
    with local_redis() as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        asyncio.run(fill(url, account, records))
        plain = redis.Redis.from_url(url)
        keys = EmailStore(plain, account).keys  # type: ignore[arg-type]
        old_key = keys.emails
        for start in range(0, count, 1000):
            part = records[start : start + 1000]
            plain.hset(
                old_key,
                mapping={r.id: pack([r.thread_id, r.received_at, r.size, r.copies]) for r in part},
            )
        for kind in KINDS:
            plain.hset(
                keys.immutable(kind), mapping={i: secrets.token_bytes(50).hex() for i in ids}
            )
        new_script = plain.register_script(_READ_WITH_STATE)
        old_script = plain.register_script(FORMAT_2_READ)
        cached = [keys.immutable(kind) for kind in KINDS]
        new_keys = [keys.state, keys.meta, keys.mailbox_numbers, *cached]
        old_keys = [keys.state, keys.meta, old_key, *cached]
        prefix = keys.record_bucket("")

        def run(new: bool) -> tuple[float, float]:
            plain.config_resetstat()
            for _ in range(calls):
                sample = rng.sample(ids, WANTED)
                if new:
                    new_script(keys=new_keys, args=[EMAIL, prefix, *sample])
                else:
                    old_script(keys=old_keys, args=[EMAIL, *sample])
            stats = plain.info("commandstats")
            script = stats["cmdstat_evalsha"]
            inside = sum(
                int(v["calls"])
                for name, v in stats.items()
                if name not in ("cmdstat_evalsha", "cmdstat_config|resetstat")
            )
            return float(script["usec_per_call"]), inside / int(script["calls"])

        results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for _ in range(rounds):
            for new in (False, True):
                results[new].append(run(new))

        numbers = {
            int(v): k.decode()
            for k, v in plain.hgetall(keys.mailbox_numbers).items()
            if k not in (b"*", b"+")
        }
        sample = rng.sample(ids, WANTED)
        new_got = new_script(keys=new_keys, args=[EMAIL, prefix, *sample])[0]
        old_got = old_script(keys=old_keys, args=[EMAIL, *sample])[0]
        new_values = list(zip(sample, new_got, strict=True))
        old_values = list(zip(sample, old_got, strict=True))

        def decode_new() -> Any:
            return {i: decode(i, v, numbers) for i, v in new_values}

        def decode_old() -> Any:
            out = {}
            for i, v in old_values:
                thread_id, received_at, size, copies = unpack(v)
                out[i] = EmailRecord(i, thread_id, received_at, size, copies)
            return out

        timings = {
            label: min(timeit.repeat(func, number=500, repeat=7)) / 500 * 1e6
            for label, func in (("old", decode_old), ("new", decode_new))
        }
        old_octets = int(plain.memory_usage(old_key, samples=0) or 0)
        new_octets = sum(
            int(plain.memory_usage(k, samples=0) or 0)
            for k in plain.scan_iter(match=keys.record_bucket("*"), count=1000)
        )
        encodings = {
            plain.object("encoding", k)
            for k in plain.scan_iter(match=keys.record_bucket("*"), count=1000)
        }
        plain.close()

    def median(new: bool, at: int) -> float:
        return statistics.median(r[at] for r in results[new])

    print(
        f"\nwarm Email/get read script, {WANTED} random ids of {count} records and "
        f"{len(KINDS)} cached kinds, {calls} calls x {rounds} rounds (machine may be shared)"
    )
    print(f"{'':36}{'format 2 (emails hash)':>24}{'format 3 (buckets)':>22}")
    print(
        f"{'Redis CPU per call, us (median)':36}{median(False, 0):>24.1f}{median(True, 0):>22.1f}"
    )
    print(f"{'  per round':36}" + " ".join(f"{r[0]:.0f}" for r in results[False]).rjust(24))
    print(f"{'':36}" + " ".join(f"{r[0]:.0f}" for r in results[True]).rjust(46))
    print(f"{'commands inside per call':36}{median(False, 1):>24.1f}{median(True, 1):>22.1f}")
    print(f"{'Python decode of the 50, us':36}{timings['old']:>24.1f}{timings['new']:>22.1f}")
    print(f"{'records, octets per email':36}{old_octets / count:>24.1f}{new_octets / count:>22.1f}")
    print(f"{'record buckets encodings':36}{'':>24}{sorted(encodings)!s:>22}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    main(args.count, args.calls, args.rounds)
