"""What keeps the gateway's own threads findable, and its removal with the thread's last email.

A thread the gateway made (no THREADID upstream, see gateway.sync.threads) is found again by
the Message-IDs its emails named: ``thread-refs`` maps each to the thread, and the thread's
links (gateway.cache.thread_table ``r.T``) hold its subject's digest. Those entries are worth
keeping while any email of the thread is in the index, whichever email wrote them: a reply
arriving later may name any of them. So they are counted per thread, not per email, and all
go when the thread's last email record does (its last copy expunged); until then the map
grows only with the emails it holds.

``thread-refs:<n>`` are buckets of about 48 keys (small hashes, Redis's listpack encoding),
found by linear hashing of the key: the table grows one bucket split at a time, in the
write script, so no rehash ever stops the world.

A thread's links: its email records (visible or not), its subject digest, and the first 4
octets of each ``thread-refs`` key pointing at it (all that key's bucket depends on: the
thread's removal clears every entry naming it in those buckets). The index script appends
and removes them (gateway.cache.index_script ``link``/``unlink``), so no read precedes the
write.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.cache.index_script import OpRecorder
from gateway.cache.keys import AccountKeys
from gateway.cache.thread_table import ref_hash, subject_digest

# gateway.sync.threads.ref_key: a 12-octet digest of the Message-ID.
REF_OCTETS = 12


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


def write_links(
    pipe: OpRecorder,
    counts: Mapping[str, int],
    new_refs: Mapping[bytes, str],
    subjects: Mapping[str, str],
    emptied: Collection[str],
) -> None:
    """Record the new counts with the keys just mapped and the new threads' subjects, and
    the removal of emptied threads (with every key that pointed at them)."""
    by_thread: dict[str, list[bytes]] = {}
    for key, thread_id in new_refs.items():
        if len(key) != REF_OCTETS:
            raise ValueError("a thread-refs key of another width")
        by_thread.setdefault(thread_id, []).append(ref_hash(key))
    pipe.link(
        [
            (
                thread_id,
                count,
                subject_digest(subjects[thread_id]) if thread_id in subjects else b"",
                b"".join(by_thread.get(thread_id, [])),
            )
            for thread_id, count in counts.items()
            if thread_id not in emptied
        ]
    )
    pipe.unlink([(t, b"".join(by_thread.get(t, []))) for t in emptied])


def write_subjects(pipe: OpRecorder, subjects: Mapping[str, str]) -> None:
    """New threads' subjects alone, their record counts left as they are (none: 0)."""
    pipe.link([(t, "", subject_digest(s), b"") for t, s in subjects.items()])
