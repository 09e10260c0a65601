"""The email index's storage format, and the reset of an index written in an older one.

The email part of an account's index (records, uid maps, threads, by-date sets, counts, the
thread bookkeeping and the Email/Thread change logs) is derived data: the upstream holds the
truth, and a catch-up rebuilds all of it. So a format change is not migrated in place: an
index whose meta ``index-format`` is not :data:`INDEX_FORMAT` loses its email part at once
and the next catch-up is an initial indexing. Ids survive it (contract D1): the id strategy
(meta ``email-ids``, ``mailbox-ids``) and the mailbox records stay, and email and thread ids
are derived again the same way from the same messages.

A client holding an Email or Thread state from before the reset gets cannotCalculateChanges
once (RFC 8620 5.2 allows it: the client then fetches afresh): the reset moves both types'
modseqs past their floors.
"""

from __future__ import annotations

import secrets

from gateway.cache.changes import EPOCH_CHARS, floor_field
from gateway.cache.chunked_set import chunked_keys
from gateway.cache.codec import text
from gateway.cache.emails import EMAIL, INDEXED_FIELD, THREAD, EmailStore
from gateway.cache.format_fence import NewerIndexFormat, newer
from gateway.cache.keys import INDEX_FORMAT, INDEX_FORMAT_FIELD, AccountKeys
from gateway.cache.locks import LeaseLost
from gateway.cache.query_index import query_part_keys, query_set_names
from gateway.cache.record_buckets import RECORDS, bucket_count, shape_fields
from gateway.cache.thread_links import ref_shape
from gateway.cache.thread_table import HEADS_FIELD, THREADS

# Formats (INDEX_FORMAT, in keys.py): 1 (no field): one uid-map hash per folder, one
# thread-refs hash, a thread-keys set per thread, change logs for the first indexing. 2: none
# for the first indexing, uid maps and thread-refs in listpack-sized buckets, a thread's ref
# keys packed in thread-members. 3: the by-date and sparse query sets in chunks
# (gateway.cache.chunked_set: ``<name>#d``, ``#m``, ``#<n>``), no longer one zset per name;
# email records in listpack-sized buckets by linear hashing (``records:<n>``, no more
# ``emails`` hash), naming mailboxes by ``mailbox-numbers``. 4: threads in listpack-sized
# buckets by linear hashing (``threads:<n>``, gateway.cache.thread_table): heads naming
# mailboxes by number, member chunks and links (record count, subject digest, ref hashes)
# instead of the ``threads``, ``thread-members`` and ``thread-subjects`` hashes.
FORMAT_FIELD = INDEX_FORMAT_FIELD
LOGGED = (EMAIL, THREAD)
# The email part's fields of the account's meta hash.
# ``thread-links``: format 3's mark that its thread-members were filled.
META_FIELDS = (
    INDEXED_FIELD,
    "refs-level",
    "refs-split",
    "refs-count",
    *shape_fields(RECORDS),
    *shape_fields(THREADS),
    HEADS_FIELD,
    "thread-links",
)

# KEYS: the email lease, meta, state, then every key of the email part. ARGV: the lease
# token, the format field and value, how many meta fields go, an epoch candidate, those
# fields, then (type, its floor field) pairs. Returns -1 when the lease is not ours, else the
# number of keys removed, or -2 when a newer release wrote the index meanwhile. One script:
# readers see the old index or none of it.
_RESET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local stored = redis.call('HGET', KEYS[2], ARGV[2])
if stored == ARGV[3] then
  return 0
end
if stored and string.match(stored, '^%d+$') and tonumber(stored) > tonumber(ARGV[3]) then
  return -2
end
local removed = 0
for i = 4, #KEYS do
  removed = removed + redis.call('UNLINK', KEYS[i])
end
redis.call('HDEL', KEYS[2], unpack(ARGV, 6, 5 + tonumber(ARGV[4])))
redis.call('HSETNX', KEYS[2], 'epoch', ARGV[5])
-- A new account had nothing to reset: its states stay (no client saw them move).
if removed > 0 then
  for i = 6 + tonumber(ARGV[4]), #ARGV, 2 do
    local modseq = redis.call('HINCRBY', KEYS[3], ARGV[i], 1)
    redis.call('HSET', KEYS[2], ARGV[i + 1], modseq)
  end
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return removed
"""


async def refuse_newer(store: EmailStore) -> None:
    """:class:`NewerIndexFormat` if a newer release wrote the account's index (one HGET)."""
    stored = await store.meta(FORMAT_FIELD)
    if newer(stored):
        raise NewerIndexFormat(str(stored))


async def ensure_current(store: EmailStore) -> bool:
    """Reset the account's email part if it was written in an older format; True if it held
    anything then. Cheap when current (one HGET); otherwise takes the account's email lease
    (waiting as a catch-up would), so no writer of the old layout interleaves. An index of a
    newer format is left alone: :class:`NewerIndexFormat`."""
    stored = await store.meta(FORMAT_FIELD)
    if stored == str(INDEX_FORMAT):
        return False
    if newer(stored):
        raise NewerIndexFormat(str(stored))
    async with store.lease() as held:
        names = await email_part_keys(store)
        removed = await store.client.register_script(_RESET)(
            keys=[held.key, store.keys.meta, store.keys.state, *names],
            args=[
                held.token,
                FORMAT_FIELD,
                INDEX_FORMAT,
                len(META_FIELDS),
                secrets.token_hex(EPOCH_CHARS // 2),
                *META_FIELDS,
                *(name for t in LOGGED for name in (t, floor_field(t))),
            ],
        )
    if int(removed) == -2:
        raise NewerIndexFormat(str(await store.meta(FORMAT_FIELD)))
    if int(removed) < 0:
        raise LeaseLost(held.key)
    store.numbers.forget()  # the table went with the records (other processes: its generation)
    return int(removed) > 0


async def email_part_keys(store: EmailStore) -> list[str]:
    """Every key of the account's email part, whichever format wrote it: the fixed ones, and
    the per-folder and per-thread ones named by the hashes that list folders and threads."""
    k = store.keys
    client = store.client
    async with client.pipeline(transaction=False) as pipe:
        pipe.hkeys(k.mailboxes)
        pipe.hkeys(k.folder_marks)
        pipe.hkeys(k.thread_members)
        pipe.hkeys(k.threads)
        mailboxes, marked, members, threads = await pipe.execute()
    folders = list(dict.fromkeys(text(m) for m in [*mailboxes, *marked]))
    async with client.pipeline(transaction=False) as pipe:
        for mailbox_id in folders:
            pipe.smembers(k.uid_buckets(mailbox_id))
        buckets = await pipe.execute()
    bucket_keys = [
        k.uid_bucket(m, int(n))
        for m, numbers in zip(folders, buckets, strict=True)
        for n in numbers
    ]
    level, split, _ = await ref_shape(client, k)
    records = bucket_count(await client.hmget(k.meta, shape_fields(RECORDS)))
    thread_buckets = bucket_count(await client.hmget(k.meta, shape_fields(THREADS)))
    threads_named = dict.fromkeys(text(t) for t in [*members, *threads])
    return [
        *_fixed_keys(k),
        *(key for m in folders for key in (k.uids(m), k.uid_buckets(m), k.old_uids(m))),
        *bucket_keys,
        *(k.thread_keys(t) for t in threads_named),
        *(k.thread_ref_bucket(n) for n in range((1 << level) + split)),
        *(k.record_bucket(n) for n in range(records)),
        *(k.thread_bucket(n) for n in range(thread_buckets)),
        *query_part_keys(k, folders),
        *await chunked_keys(
            client, [k.dated(), *(k.dated(m) for m in folders), *query_set_names(k, folders)]
        ),
    ]


def _fixed_keys(k: AccountKeys) -> list[str]:
    logs = [
        key(data_type)
        for data_type in LOGGED
        for key in (k.changed, k.born, k.dead, k.full, k.lapse_from, k.lapse_to)
    ]
    return [
        k.emails,
        k.mailbox_numbers,
        k.folder_marks,
        k.threads,
        k.counts,
        k.thread_refs,
        k.thread_subjects,
        k.thread_members,
        *logs,
    ]
