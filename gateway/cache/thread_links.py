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

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from gateway.cache.codec import octets, text
from gateway.cache.emails import EmailStore, decode
from gateway.cache.index_script import OpRecorder
from gateway.cache.keys import AccountKeys
from gateway.cache.locks import Lease
from gateway.offload import off_loop


class ThreadLinks:
    """Reads one account's thread bookkeeping; writes go in an index batch (write_links)."""

    def __init__(self, store: EmailStore) -> None:
        self.client = store.client
        self.keys = store.keys

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
        records = await self.client.hgetall(self.keys.emails)
        refs = await self.client.hgetall(self.keys.thread_refs)
        subjects = await self.client.hkeys(self.keys.thread_subjects)
        counts, by_thread = await off_loop(_tally, records, refs)
        if counts:
            pipe.hset(self.keys.thread_members, mapping=dict(counts.items()))
        for thread_id, keys in by_thread.items():
            if thread_id in counts:
                pipe.sadd(self.keys.thread_keys(thread_id), *keys)
            else:
                pipe.hdel(self.keys.thread_refs, *keys)
        orphans = [t for t in map(text, subjects) if t not in counts]
        if orphans:
            pipe.hdel(self.keys.thread_subjects, *orphans)


def write_links(
    pipe: OpRecorder,
    keys: AccountKeys,
    counts: Mapping[str, int],
    new_refs: Mapping[bytes, str],
    emptied: Mapping[str, Iterable[bytes]],
) -> None:
    """Queue the new counts, the keys just mapped, and the removal of emptied threads
    (with every key that pointed at them) on ``pipe``."""
    kept = {t: n for t, n in counts.items() if t not in emptied}
    if kept:
        pipe.hset(keys.thread_members, mapping=kept)
    by_thread: dict[str, list[bytes]] = {}
    for key, thread_id in new_refs.items():
        by_thread.setdefault(thread_id, []).append(key)
    for thread_id, added in by_thread.items():
        if thread_id not in emptied:
            pipe.sadd(keys.thread_keys(thread_id), *added)
    for thread_id, pointing in emptied.items():
        gone = [*pointing, *by_thread.get(thread_id, [])]
        if gone:
            pipe.hdel(keys.thread_refs, *gone)
        pipe.delete(keys.thread_keys(thread_id))
        pipe.hdel(keys.thread_subjects, thread_id)
        pipe.hdel(keys.thread_members, thread_id)


def _tally(
    records: Mapping[bytes | str, bytes | str], refs: Mapping[bytes | str, bytes | str]
) -> tuple[Counter[str], dict[str, list[bytes]]]:
    """Email records per thread, and the thread-refs keys per thread they point at."""
    counts = Counter(decode(text(i), octets(v)).thread_id for i, v in records.items())
    by_thread: dict[str, list[bytes]] = {}
    for key, thread_id in refs.items():
        by_thread.setdefault(text(thread_id), []).append(octets(key))
    return counts, by_thread
