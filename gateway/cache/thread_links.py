"""What keeps the gateway's own threads findable, and its removal with the thread's last email.

A thread the gateway made (no THREADID upstream, see gateway.sync.threads) is found again by
the Message-IDs its emails named: ``thread-refs`` maps each to the thread, ``thread-subjects``
holds the thread's subject. Those entries are worth keeping while any email of the thread is
in the index, whichever email wrote them: a reply arriving later may name any of them. So
they are counted per thread, not per email, and all go when the thread's last email record
does (its last copy expunged); until then the map grows only with the emails it holds.

* ``thread-members``: thread id -> the email records (visible or not) that belong to it;
* ``thread-keys:<thread>``: the ``thread-refs`` keys pointing at the thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster

from gateway.cache.codec import octets, text
from gateway.cache.emails import EmailRecord
from gateway.cache.keys import AccountKeys


class ThreadLinks:
    """Reads, and writes into a caller's transaction, one account's thread bookkeeping."""

    def __init__(self, client: Redis | RedisCluster, keys: AccountKeys) -> None:
        self.client = client
        self.keys = keys

    async def members(self, thread_ids: Iterable[str]) -> dict[str, int]:
        """The records counted for each thread that has any."""
        wanted = list(dict.fromkeys(thread_ids))
        if not wanted:
            return {}
        values = await self.client.hmget(self.keys.thread_members, wanted)
        return {t: int(v) for t, v in zip(wanted, values, strict=True) if v is not None}

    async def keys_of(self, thread_ids: Iterable[str]) -> dict[str, list[bytes]]:
        """The Message-ID keys pointing at each thread."""
        wanted = list(dict.fromkeys(thread_ids))
        if not wanted:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for thread_id in wanted:
                pipe.smembers(self.keys.thread_keys(thread_id))
            results = await pipe.execute()
        return {t: [octets(k) for k in found] for t, found in zip(wanted, results, strict=True)}

    def write(
        self,
        pipe: Pipeline | ClusterPipeline,
        counts: Mapping[str, int],
        new_refs: Mapping[bytes, str],
        emptied: Mapping[str, Iterable[bytes]],
    ) -> None:
        """Queue the new counts, the keys just mapped, and the removal of emptied threads
        (with every key that pointed at them) on ``pipe``."""
        kept = {t: n for t, n in counts.items() if t not in emptied}
        if kept:
            pipe.hset(self.keys.thread_members, mapping=dict(kept.items()))
        by_thread: dict[str, list[bytes]] = {}
        for key, thread_id in new_refs.items():
            by_thread.setdefault(thread_id, []).append(key)
        for thread_id, added in by_thread.items():
            if thread_id not in emptied:
                pipe.sadd(self.keys.thread_keys(thread_id), *added)
        for thread_id, keys in emptied.items():
            gone = [*keys, *by_thread.get(thread_id, [])]
            if gone:
                pipe.hdel(self.keys.thread_refs, *gone)
            pipe.delete(self.keys.thread_keys(thread_id))
            pipe.hdel(self.keys.thread_subjects, thread_id)
            pipe.hdel(self.keys.thread_members, thread_id)

    async def fill(self, pipe: Pipeline | ClusterPipeline, records: Iterable[EmailRecord]) -> None:
        """Queue the bookkeeping of an index made before it existed: counts from the records,
        keys from ``thread-refs``; entries of threads without records go at once."""
        counts = Counter(record.thread_id for record in records)
        refs = await self.client.hgetall(self.keys.thread_refs)
        subjects = [text(t) for t in await self.client.hkeys(self.keys.thread_subjects)]
        by_thread: dict[str, list[bytes]] = {}
        for key, thread_id in refs.items():
            by_thread.setdefault(text(thread_id), []).append(octets(key))
        if counts:
            pipe.hset(self.keys.thread_members, mapping=dict(counts.items()))
        for thread_id, keys in by_thread.items():
            if thread_id in counts:
                pipe.sadd(self.keys.thread_keys(thread_id), *keys)
            else:
                pipe.hdel(self.keys.thread_refs, *keys)
        orphans = [t for t in subjects if t not in counts]
        if orphans:
            pipe.hdel(self.keys.thread_subjects, *orphans)
