"""What keeps the gateway's own threads findable, and its removal with the thread's last email.

A thread the gateway made (no THREADID upstream, see gateway.sync.threads) is found again by
the Message-IDs its emails named: ``thread-refs`` maps each to the thread, ``thread-subjects``
holds the thread's subject. Those entries are worth keeping while any email of the thread is
in the index, whichever email wrote them: a reply arriving later may name any of them. So
they are counted per thread, not per email, and all go when the thread's last email record
does (its last copy expunged); until then the map grows only with the emails it holds.

``thread-refs:<n>`` are buckets of about 48 keys (small hashes, Redis's listpack encoding),
found by linear hashing of the key: the table grows one bucket split at a time, in the
write script, so no rehash ever stops the world.

``thread-members``: thread id -> ``<records>:<ref keys>``, while it has records: the email
records (visible or not) that belong to it, then the ``thread-refs`` keys pointing at it,
concatenated (each :data:`REF_OCTETS` long). One hash field per thread: a set per thread
cost 120 octets per email (bench.index_memory). The index script appends and removes them
(gateway.cache.index_script ``link``/``unlink``), so no read precedes the write.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster

from gateway.cache.codec import octets, text
from gateway.cache.emails import EmailStore, thread_of
from gateway.cache.index_script import OpRecorder
from gateway.cache.keys import AccountKeys
from gateway.cache.locks import Lease
from gateway.offload import off_loop

# gateway.sync.threads.ref_key: a 12-octet digest of the Message-ID.
REF_OCTETS = 12


class ThreadLinks:
    """Reads one account's thread bookkeeping; writes go in an index batch (write_links)."""

    def __init__(self, store: EmailStore) -> None:
        self.client = store.client
        self.keys = store.keys
        self.store = store

    async def members(self, thread_ids: Iterable[str]) -> dict[str, int]:
        """The records counted for each thread that has any."""
        wanted = list(dict.fromkeys(thread_ids))
        if not wanted:
            return {}
        values = await self.client.hmget(self.keys.thread_members, wanted)
        return {
            t: member_count(octets(v)) for t, v in zip(wanted, values, strict=True) if v is not None
        }

    async def fill(self, held: Lease, done_field: str) -> None:
        """Write the bookkeeping of an index made before it existed, in one transaction
        committed only while ``held``, with the meta field ``done_field`` saying it is done:
        counts from the email records, keys from ``thread-refs``; entries of threads without
        records go at once.

        Once per account, over its whole index: the counting runs off the event loop."""
        async with self.client.pipeline(transaction=True) as pipe:
            await held.fence(pipe)
            await self._fill(pipe)
            pipe.hset(self.keys.meta, done_field, "1")
            await pipe.execute()

    async def _fill(self, pipe: Pipeline | ClusterPipeline) -> None:
        records = await self.store.record_values()
        level, split, count = await ref_shape(self.client, self.keys)
        async with self.client.pipeline(transaction=False) as reads:
            for bucket in range((1 << level) + split):
                reads.hgetall(self.keys.thread_ref_bucket(bucket))
            refs = {k: v for part in await reads.execute() for k, v in part.items()}
        subjects = await self.client.hkeys(self.keys.thread_subjects)
        counts, by_thread = await off_loop(_tally, records, refs)
        if counts:
            pipe.hset(
                self.keys.thread_members,
                mapping={t: member_value(n, by_thread.get(t, ())) for t, n in counts.items()},
            )
        for thread_id, keys in by_thread.items():
            if thread_id not in counts:
                for key in keys:
                    pipe.hdel(self.keys.thread_ref_bucket(ref_bucket(key, level, split)), key)
                    count -= 1
        pipe.hset(self.keys.meta, "refs-count", count)
        orphans = [t for t in map(text, subjects) if t not in counts]
        if orphans:
            pipe.hdel(self.keys.thread_subjects, *orphans)


async def ref_shape(client: Redis | RedisCluster, keys: AccountKeys) -> tuple[int, int, int]:
    """The thread-refs table's level, split pointer and entry count (linear hashing: see
    gateway.cache.index_script REF_HASHING, which this mirrors)."""
    values = await client.hmget(keys.meta, ["refs-level", "refs-split", "refs-count"])
    level, split, count = (int(v or 0) for v in values)
    return level, split, count


def ref_bucket(ref: bytes, level: int, split: int) -> int:
    """The bucket of a Message-ID key: its first 4 octets modulo 2^level, or 2^(level+1)
    for the buckets already split this round."""
    value = int.from_bytes(ref[:4], "big")
    bucket = value % (1 << level)
    return value % (1 << (level + 1)) if bucket < split else bucket


def member_value(count: int, refs: Iterable[bytes]) -> bytes:
    """A ``thread-members`` value: the record count, then the ref keys."""
    return str(count).encode() + b":" + b"".join(refs)


def member_count(value: bytes) -> int:
    return int(value.partition(b":")[0])


def write_links(
    pipe: OpRecorder,
    keys: AccountKeys,
    counts: Mapping[str, int],
    new_refs: Mapping[bytes, str],
    emptied: Collection[str],
) -> None:
    """Record the new counts with the keys just mapped, and the removal of emptied threads
    (with every key that pointed at them)."""
    by_thread: dict[str, list[bytes]] = {}
    for key, thread_id in new_refs.items():
        if len(key) != REF_OCTETS:
            raise ValueError("a thread-refs key of another width")
        by_thread.setdefault(thread_id, []).append(key)
    for thread_id, count in counts.items():
        if thread_id not in emptied:
            pipe.link(keys.thread_members, thread_id, count, b"".join(by_thread.get(thread_id, [])))
    for thread_id in emptied:
        added = b"".join(by_thread.get(thread_id, []))
        pipe.unlink(keys.thread_members, keys.thread_subjects, thread_id, REF_OCTETS, added)


def _tally(
    records: Mapping[str, bytes], refs: Mapping[bytes | str, bytes | str]
) -> tuple[Counter[str], dict[str, list[bytes]]]:
    """Email records per thread, and the thread-refs keys per thread they point at."""
    counts = Counter(thread_of(v) for v in records.values())
    by_thread: dict[str, list[bytes]] = {}
    for key, thread_id in refs.items():
        by_thread.setdefault(text(thread_id), []).append(octets(key))
    return counts, by_thread
