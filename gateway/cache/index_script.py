"""The one Lua script every write of an account's email index runs as (gateway.cache.index_batch).

A batch's writes are recorded as an op list (:class:`OpRecorder`, the shapes of redis-py's
pipeline methods) and sent as ONE ``EVALSHA``: one round trip per batch, however many keys
it touches, and one command for a Redis Cluster node to apply and replicate. The script is
loaded once per node (``SCRIPT LOAD`` on every primary, again after a ``NOSCRIPT`` reply:
redis-py's Script does both).

The op list travels as one msgpack array (one argument, unpacked by the ``cmsgpack`` library
every Redis and Valkey bundles for scripts), not as ~27 arguments per email: redis-py spent
a fifth of a first sync's CPU framing those one by one. Every element is packed as a string
(numbers written out in Python, exactly as redis-py writes them), so the op branches see
Lua strings as they saw ARGV's.

What the script guarantees, in the order it runs:

1. **The fence**: with a lease token, nothing is written unless the lease key holds it
   (this replaces WATCH; a script runs alone, so the check and the writes cannot
   interleave with another client's); nor into an index marked with another format than
   the writer's (a replica of another release, during a rolling upgrade: an error reply).
2. **All or nothing**: a Lua script is not rolled back when a command fails half way, so
   every op's key is checked first (its type, and that counters hold integers); a batch
   that would fail on any op writes nothing and answers an error.
3. **The change log in the same script**: per logged type the modseq moves and the log
   zsets take their entries exactly as ``AccountState.record`` does
   (gateway.cache.changes), so /changes reads both alike; the reply carries
   [epoch, modseq] per log op for gateway.cache.journal.

Every key carries the account's hash tag, so the script runs on the node owning that slot
(Redis Cluster allows multi-key scripts within one slot). The keys an op names are passed in
KEYS; the bucket keys of uid maps being dropped, of the thread-refs and email-record tables
(gateway.cache.record_buckets), and the chunks and count hash of a chunked set
(gateway.cache.chunked_set, from its directory's name), are named inside the script,
because only the script knows which there are at that moment. Redis tolerates such keys
in scripts without a flags shebang when they share the slot (the 3-node cluster tests run
it); they are not type-checked first (a chunked set's count hash is).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import DataError
from redis.typing import EncodableT

from gateway.cache.changes import EPOCH_CHARS
from gateway.cache.chunked_set import CHUNK_LUA, directory, sort_members
from gateway.cache.keys import INDEX_FORMAT, INDEX_FORMAT_FIELD, AccountKeys
from gateway.cache.record_buckets import BUCKET_LUA
from gateway.cache.thread_table import HEADS_FIELD, THREAD_FUNCTIONS, THREADS

# The error an rput op answers when the mailbox numbers it was encoded with are gone.
STALE_NUMBERS = "index batch: mailbox numbers changed generation"
# At most this many arguments per op, so Lua's unpack() stays far below its stack limit
# (LUAI_MAXCSTACK, 8000); longer ops are split into several.
OP_ARGS = 1000

# KEYS[1] the lease key (or any key, unchecked without a token), KEYS[2] meta, KEYS[3]
# state, then the batch's keys. The real ARGV: the lease token or "", the packed op list,
# the meta field naming the index format and the writer's format. The script unpacks the
# list into a table it names ARGV, laid out as before: [1] the token, [2] an epoch
# candidate, then ops: name, argument count n, then n arguments (the first one a key's
# index in KEYS).
# log: the indexes of the type's changed, born, dead, full, lapse-from, lapse-to keys,
# the type, its mode (f: minor properties tracked apart, n: normal, i: initial indexing:
# the modseq moves and the floor with it, no per-id entries), its floor field, then
# (kind, id) pairs as AccountState.record takes them.
# Thread-refs by linear hashing (gateway.cache.thread_links): buckets ``thread-refs:<n>``
# of about REF_LOAD entries (listpack-sized); the account's meta holds the table's level,
# split pointer and count. Shared by the write script and the read script.
REF_HASHING = (
    BUCKET_LUA
    + """
local REF_LOAD = 48
local function ref_shape(meta)
  return bucket_shape(meta, 'refs')
end
local function ref_hash(ref)
  local a, b, c, d = string.byte(ref, 1, 4)
  return ((a * 256 + b) * 256 + c) * 256 + d
end
local function ref_bucket(prefix, ref, level, split)
  return bucket_of(prefix, ref_hash(ref), level, split)
end
"""
)

SCRIPT = (
    REF_HASHING
    + THREAD_FUNCTIONS
    + CHUNK_LUA
    + f"""
local THREADS, HEADS = '{THREADS}', '{HEADS_FIELD}'
"""
    + """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0}
end
-- An index another release wrote in another layout is not written into (a rolling upgrade:
-- gateway.cache.index_format); an index not yet marked with a format is anyone's.
local format = redis.call('HGET', KEYS[2], ARGV[3])
if format and format ~= ARGV[4] then
  return redis.error_reply('index batch: the index is in format ' .. format ..
    ', this writer writes format ' .. ARGV[4])
end
-- A Redis Cluster slot being migrated answers keys named inside the script (not in KEYS)
-- with an error, per call, once it has moved: probe a name that never exists under the
-- account's tag before writing anything, so such a batch writes nothing.
local probe = redis.pcall('TYPE', KEYS[2] .. '#probe')
if type(probe) == 'table' and probe.err then
  return redis.error_reply('index batch refused, nothing written: ' .. probe.err)
end
-- The op list arrives as ONE msgpack array laid out as ARGV was (token, epoch, ops), every
-- element a string (OpRecorder.run): the op branches below read it as they read ARGV.
local ARGV = cmsgpack.unpack(ARGV[2])
local want = {hset = 'hash', hdel = 'hash', hincrby = 'hash', zadd = 'zset', zrem = 'zset',
  zadd_present = 'zset', sadd = 'set', link = 'hash', unlink = 'hash', cadd = 'zset',
  crem = 'zset', cdrop = 'zset', rput = 'hash', rdel = 'hash', tput = 'hash', tdel = 'hash'}
local typed = {}
local i = 3
while i <= #ARGV do
  local op, n = ARGV[i], tonumber(ARGV[i + 1])
  local key = KEYS[tonumber(ARGV[i + 2])]
  local kind = want[op]
  if kind then
    local have = typed[key]
    if have == nil then
      have = redis.call('TYPE', key).ok
      typed[key] = have
    end
    if have ~= 'none' and have ~= kind then
      return redis.error_reply('WRONGTYPE index batch: ' .. op .. ' on a ' .. have)
    end
    if have == 'none' then
      typed[key] = kind
    end
    if op == 'hincrby' then
      local v = redis.call('HGET', key, ARGV[i + 3])
      if v and not string.match(v, '^-?%d+$') then
        return redis.error_reply('index batch: hincrby on a value that is not an integer')
      end
    elseif op == 'cadd' or op == 'crem' or op == 'cdrop' then
      -- A chunked set's count hash (gateway.cache.chunked_set: the directory "N#d", "N#m").
      local have = redis.call('TYPE', string.sub(key, 1, -2) .. 'm').ok
      if have ~= 'none' and have ~= 'hash' then
        return redis.error_reply('WRONGTYPE index batch: chunked set count is a ' .. have)
      end
    elseif op == 'rput' or op == 'tput' then
      -- Records and thread heads name mailboxes by number (gateway.cache.mailbox_numbers):
      -- encoded with the table of this generation, or not written at all.
      local numbers = KEYS[tonumber(ARGV[i + 3])]
      local numbered = redis.call('TYPE', numbers).ok == 'hash'
      if not numbered or redis.call('HGET', numbers, '*') ~= ARGV[i + 4] then
        return redis.error_reply('index batch: mailbox numbers changed generation')
      end
    end
  elseif op == 'delete' then
    for j = i + 2, i + 1 + n do
      typed[KEYS[tonumber(ARGV[j])]] = 'none'
    end
  elseif op == 'drop_buckets' then
    local have = redis.call('TYPE', key).ok
    if have ~= 'none' and have ~= 'set' then
      return redis.error_reply('WRONGTYPE index batch: bucket directory is a ' .. have)
    end
    typed[key] = 'none'
  elseif op == 'log' then
    for j = i + 2, i + 7 do
      local logkey = KEYS[tonumber(ARGV[j])]
      local have = redis.call('TYPE', logkey).ok
      if have ~= 'none' and have ~= 'zset' then
        return redis.error_reply('WRONGTYPE index batch: change log on a ' .. have)
      end
    end
  end
  i = i + 2 + n
end
local logged = {1}
i = 3
while i <= #ARGV do
  local op, n = ARGV[i], tonumber(ARGV[i + 1])
  local first, last = i + 2, i + 1 + n
  if op == 'hset' then
    redis.call('HSET', KEYS[tonumber(ARGV[first])], unpack(ARGV, first + 1, last))
  elseif op == 'hdel' then
    redis.call('HDEL', KEYS[tonumber(ARGV[first])], unpack(ARGV, first + 1, last))
  elseif op == 'hincrby' then
    redis.call('HINCRBY', KEYS[tonumber(ARGV[first])], ARGV[first + 1], ARGV[first + 2])
  elseif op == 'zadd' then
    redis.call('ZADD', KEYS[tonumber(ARGV[first])], unpack(ARGV, first + 1, last))
  elseif op == 'zadd_present' then
    local key = KEYS[tonumber(ARGV[first])]
    if redis.call('EXISTS', key) == 1 then
      redis.call('ZADD', key, unpack(ARGV, first + 1, last))
    end
  elseif op == 'zrem' then
    redis.call('ZREM', KEYS[tonumber(ARGV[first])], unpack(ARGV, first + 1, last))
  elseif op == 'cadd' then
    chunk_add(KEYS[tonumber(ARGV[first])], ARGV, first + 1, last)
  elseif op == 'crem' then
    chunk_remove(KEYS[tonumber(ARGV[first])], ARGV, first + 1, last)
  elseif op == 'cdrop' then
    chunk_drop(KEYS[tonumber(ARGV[first])])
  elseif op == 'sadd' then
    redis.call('SADD', KEYS[tonumber(ARGV[first])], unpack(ARGV, first + 1, last))
  elseif op == 'delete' then
    for j = first, last do
      redis.call('UNLINK', KEYS[tonumber(ARGV[j])])
    end
  elseif op == 'drop_buckets' then
    -- A bucketed structure as a whole: its directory names its buckets (keys under the
    -- same prefix, so the same hash tag and slot as every declared key).
    local directory = KEYS[tonumber(ARGV[first])]
    for _, number in ipairs(redis.call('SMEMBERS', directory)) do
      redis.call('UNLINK', ARGV[first + 1] .. number)
    end
    redis.call('UNLINK', directory)
  elseif op == 'link' then
    -- The gateway's own threads' links (gateway.cache.thread_table): per thread its new
    -- record count and subject digest ('' keeps the one it has) and ref hashes appended.
    local meta, prefix = KEYS[tonumber(ARGV[first])], ARGV[first + 1]
    local level, split, count = bucket_shape(meta, THREADS)
    for j = first + 2, last, 4 do
      local thread = ARGV[j]
      count = count + links_append(thread_bucket(prefix, thread, level, split), thread,
        ARGV[j + 1], ARGV[j + 2], ARGV[j + 3])
    end
    bucket_grow(meta, THREADS, prefix, THREAD_LOAD, thread_hash, level, split, count)
  elseif op == 'refs_put' then
    -- Message-ID keys -> thread, each into its bucket; then buckets split, one at a time
    -- in order, while the table holds more than REF_LOAD entries per bucket.
    local meta, prefix = KEYS[tonumber(ARGV[first])], ARGV[first + 1]
    local level, split, count = ref_shape(meta)
    for j = first + 2, last, 2 do
      local bucket = ref_bucket(prefix, ARGV[j], level, split)
      count = count + redis.call('HSET', bucket, ARGV[j], ARGV[j + 1])
    end
    bucket_grow(meta, 'refs', prefix, REF_LOAD, ref_hash, level, split, count)
  elseif op == 'rput' then
    -- Email records (gateway.cache.record_buckets), each into its bucket; then splits.
    local meta, prefix = KEYS[tonumber(ARGV[first])], ARGV[first + 3]
    local level, split, count = bucket_shape(meta, 'records')
    local order, groups = bucket_group(
      ARGV, prefix, bucket_record_hash, level, split, first + 4, last, 2
    )
    for _, bucket in ipairs(order) do
      local fields = {}
      for _, j in ipairs(groups[bucket]) do
        fields[#fields + 1] = ARGV[j]
        fields[#fields + 1] = ARGV[j + 1]
      end
      count = count + redis.call('HSET', bucket, unpack(fields))
    end
    bucket_grow(meta, 'records', prefix, RECORD_LOAD, bucket_record_hash, level, split, count)
  elseif op == 'rdel' then
    local meta, prefix = KEYS[tonumber(ARGV[first])], ARGV[first + 1]
    local level, split, count = bucket_shape(meta, 'records')
    local order, groups = bucket_group(
      ARGV, prefix, bucket_record_hash, level, split, first + 2, last, 1
    )
    for _, bucket in ipairs(order) do
      local names = {}
      for _, j in ipairs(groups[bucket]) do names[#names + 1] = ARGV[j] end
      count = count - redis.call('HDEL', bucket, unpack(names))
    end
    redis.call('HSET', meta, 'records-count', count)
  elseif op == 'unlink' then
    -- Threads left without records: every thread-refs entry naming one goes (found by the
    -- ref hashes of its links, and those this batch adds), then its links.
    local meta, prefix = KEYS[tonumber(ARGV[first])], ARGV[first + 1]
    local refprefix = ARGV[first + 2]
    local level, split, count = bucket_shape(meta, THREADS)
    local rlevel, rsplit, rcount = ref_shape(meta)
    for j = first + 3, last, 2 do
      local thread = ARGV[j]
      local bucket = thread_bucket(prefix, thread, level, split)
      local old, had = links_read(bucket, thread)
      local refs = ARGV[j + 1]
      if old then
        refs = string.sub(old, string.find(old, ':', 1, true) + 9) .. refs
      end
      local seen = {}
      for r = 1, #refs - 3, 4 do
        local rbucket = ref_bucket(refprefix, string.sub(refs, r, r + 3), rlevel, rsplit)
        if not seen[rbucket] then
          seen[rbucket] = true
          local entries = redis.call('HGETALL', rbucket)
          for e = 1, #entries, 2 do
            if entries[e + 1] == thread then
              rcount = rcount - redis.call('HDEL', rbucket, entries[e])
            end
          end
        end
      end
      if had > 0 then
        count = count - redis.call('HDEL', bucket, 'r.' .. thread)
        for k = 2, had do
          count = count - redis.call('HDEL', bucket, links_field(k, thread))
        end
      end
    end
    redis.call('HSET', meta, 'refs-count', rcount, THREADS .. '-count', count)
  elseif op == 'tput' then
    -- Threads' heads and member chunks (gateway.cache.thread_table): per thread its id,
    -- '<n>:<had>:<from>' (its parts now, head included; the chunks it had; the first chunk
    -- that changed), its head ('': unchanged), then its chunks from..n-1: only what changed
    -- is sent and written. The chunks go with one HSET per bucket, and those past the new
    -- ones are deleted. Then splits.
    local meta, prefix = KEYS[tonumber(ARGV[first])], ARGV[first + 3]
    local level, split, count = bucket_shape(meta, THREADS)
    local heads = tonumber(redis.call('HGET', meta, HEADS) or '0')
    local order, chunks = {}, {}
    local j = first + 4
    while j <= last do
      local thread = ARGV[j]
      local n, had, from = string.match(ARGV[j + 1], '^(%d+):(%d+):(%d+)$')
      n, had, from = tonumber(n), tonumber(had), tonumber(from)
      local bucket = thread_bucket(prefix, thread, level, split)
      if ARGV[j + 2] ~= '' then
        local new = redis.call('HSET', bucket, thread, ARGV[j + 2])
        heads, count = heads + new, count + new
      end
      if from < n then
        local flat = chunks[bucket]
        if not flat then
          flat = {}
          chunks[bucket] = flat
          order[#order + 1] = bucket
        end
        for k = from, n - 1 do
          flat[#flat + 1] = k .. '.' .. thread
          flat[#flat + 1] = ARGV[j + 3 + k - from]
        end
      end
      count = count - thread_chunks_drop(bucket, thread, n, had)
      j = j + 3 + n - from
    end
    for _, bucket in ipairs(order) do
      count = count + bucket_hset(bucket, chunks[bucket])
    end
    redis.call('HSET', meta, HEADS, heads)
    bucket_grow(meta, THREADS, prefix, THREAD_LOAD, thread_hash, level, split, count)
  elseif op == 'tdel' then
    -- Threads without visible members: their heads and chunks (their links stay).
    local meta, prefix = KEYS[tonumber(ARGV[first])], ARGV[first + 1]
    local level, split, count = bucket_shape(meta, THREADS)
    local heads = tonumber(redis.call('HGET', meta, HEADS) or '0')
    for j = first + 2, last do
      local bucket = thread_bucket(prefix, ARGV[j], level, split)
      local gone = redis.call('HDEL', bucket, ARGV[j])
      heads = heads - gone
      count = count - gone - thread_chunks_drop(bucket, ARGV[j], 1, nil)
    end
    redis.call('HSET', meta, HEADS, heads, THREADS .. '-count', count)
  elseif op == 'log' then
    local function key(j) return KEYS[tonumber(ARGV[first + j])] end
    local changed, born, dead, full = key(0), key(1), key(2), key(3)
    local lapse_from, lapse_to = key(4), key(5)
    local dtype, mode, floor = ARGV[first + 6], ARGV[first + 7], ARGV[first + 8]
    redis.call('HSETNX', KEYS[2], 'epoch', ARGV[2])
    local modseq = tonumber(redis.call('HGET', KEYS[3], dtype) or '0')
    if mode == 'i' then
      if last > first + 8 then
        -- RFC 8620 5.2: a server may answer cannotCalculateChanges; every state handed
        -- out during the first indexing is one (the floor follows the modseq).
        modseq = modseq + 1
        redis.call('HSET', KEYS[2], floor, modseq)
      end
    else
      for j = first + 9, last, 2 do
        local kind, id = ARGV[j], ARGV[j + 1]
        modseq = modseq + 1
        redis.call('ZADD', changed, modseq, id)
        if kind ~= 'p' and mode == 'f' then
          redis.call('ZADD', full, modseq, id)
        end
        if kind == 'c' then
          -- born keeps the first creation; a revival remembers the lapse it ends.
          redis.call('ZADD', born, 'NX', modseq, id)
          local was = redis.call('ZSCORE', dead, id)
          if was then
            redis.call('ZREM', dead, id)
            redis.call('ZADD', lapse_from, was, id)
            redis.call('ZADD', lapse_to, modseq, id)
          end
        elseif kind == 'd' then
          redis.call('ZADD', dead, modseq, id)
        end
      end
    end
    redis.call('HSET', KEYS[3], dtype, modseq)
    logged[#logged + 1] = {redis.call('HGET', KEYS[2], 'epoch'), modseq}
  elseif op == 'floor' then
    local dtype = ARGV[first + 1]
    redis.call('HSET', KEYS[2], ARGV[first + 2], redis.call('HGET', KEYS[3], dtype) or '0')
  end
  i = i + 2 + n
end
return logged
"""
)


class OpRecorder:
    """A batch's writes as the script's op list; the methods take redis-py pipeline shapes.

    Other code adds IndexBatch methods calling only these (contracts16.md, 2).
    """

    def __init__(self, keys: AccountKeys) -> None:
        self._account = keys
        self._index: dict[str, int] = {}
        # KEYS[1..3] are the lease, meta and state; the lease is filled at commit.
        self.keys: list[str] = ["", keys.meta, keys.state]
        self.ops: list[EncodableT] = []

    def __len__(self) -> int:
        return len(self.ops)

    def _key(self, key: str) -> int:
        """The key's index in KEYS (1-based, as Lua counts)."""
        found = self._index.get(key)
        if found is None:
            self.keys.append(key)
            found = self._index[key] = len(self.keys)
        return found

    def _op(self, name: str, key: str, args: list[EncodableT], step: int) -> None:
        index = str(self._key(key))
        for start in range(0, len(args), OP_ARGS - OP_ARGS % step):
            part = args[start : start + OP_ARGS - OP_ARGS % step]
            self.ops += [name, str(len(part) + 1), index, *part]

    def hset(self, key: str, mapping: Mapping[Any, EncodableT]) -> None:
        flat: list[EncodableT] = []
        for name, value in mapping.items():
            flat += [name, value]
        if flat:
            self._op("hset", key, flat, 2)

    def hdel(self, key: str, *fields: EncodableT) -> None:
        if fields:
            self._op("hdel", key, list(fields), 1)

    def hincrby(self, key: str, field: EncodableT, amount: int = 1) -> None:
        self._op("hincrby", key, [field, amount], 2)

    def zadd(self, key: str, mapping: Mapping[Any, float | int]) -> None:
        self._zadd("zadd", key, mapping)

    def zadd_present(self, key: str, mapping: Mapping[Any, float | int]) -> None:
        """ZADD only if ``key`` exists: for structures built lazily, kept while present."""
        self._zadd("zadd_present", key, mapping)

    def _zadd(self, name: str, key: str, mapping: Mapping[Any, float | int]) -> None:
        flat: list[EncodableT] = []
        for member, score in mapping.items():
            flat += [score, member]
        if flat:
            self._op(name, key, flat, 2)

    def zrem(self, key: str, *members: EncodableT) -> None:
        if members:
            self._op("zrem", key, list(members), 1)

    def chunk_add(self, name: str, members: Mapping[str, int]) -> None:
        """Members (id -> score) join chunked set ``name`` (gateway.cache.chunked_set),
        sent sorted so the script fills each chunk with one ZADD."""
        self._chunk_op("cadd", name, members)

    def chunk_remove(self, name: str, members: Mapping[str, int]) -> None:
        """Members (id -> the score they were added with) leave chunked set ``name``."""
        self._chunk_op("crem", name, members)

    def chunk_drop(self, name: str) -> None:
        """Chunked set ``name`` goes whole: its chunks, directory and count hash."""
        self.ops += ["cdrop", 1, self._key(directory(name))]

    def _chunk_op(self, op: str, name: str, members: Mapping[str, int]) -> None:
        flat: list[EncodableT] = []
        for member, score in sort_members(members.items()):
            flat += [score, member]
        if flat:
            self._op(op, directory(name), flat, 2)

    def sadd(self, key: str, *members: EncodableT) -> None:
        if members:
            self._op("sadd", key, list(members), 1)

    def link(self, links: list[tuple[str, int | str, bytes, bytes]]) -> None:
        """The gateway's own threads' links (gateway.cache.thread_table): per thread its
        record count ("" keeps the stored one, or 0), subject digest (b"" keeps the stored
        one) and ref hashes to append."""
        flat: list[EncodableT] = []
        for thread_id, count, digest, refs in links:
            flat += [thread_id, count, digest, refs]
        head: list[EncodableT] = [self._account.thread_bucket("")]
        step = OP_ARGS - 4 - OP_ARGS % 4
        for start in range(0, len(flat), step):
            args = [*head, *flat[start : start + step]]
            self._op("link", self._account.meta, args, len(args))

    def unlink(self, threads: list[tuple[str, bytes]]) -> None:
        """Threads left without records: their links, and every thread-refs entry naming
        them (found by their ref hashes and ``added``'s, per thread)."""
        flat: list[EncodableT] = []
        for thread_id, added in threads:
            flat += [thread_id, added]
        head: list[EncodableT] = [
            self._account.thread_bucket(""),
            self._account.thread_ref_bucket(""),
        ]
        step = OP_ARGS - 4 - OP_ARGS % 2
        for start in range(0, len(flat), step):
            args = [*head, *flat[start : start + step]]
            self._op("unlink", self._account.meta, args, len(args))

    def tput(
        self,
        numbers_key: str,
        generation: str,
        threads: Mapping[str, tuple[int, int, bytes, list[bytes]]],
    ) -> None:
        """Threads' heads and member chunks into their buckets: per thread the chunks it
        had, the first chunk that changed, its head (b"": unchanged) and the chunks from that
        one on (the last of them its last chunk); chunks past them are deleted. Written only
        while the mailbox numbers they were encoded with are of ``generation``."""
        head: list[EncodableT] = [
            self._key(numbers_key),
            generation,
            self._account.thread_bucket(""),
        ]
        index = str(self._key(self._account.meta))
        group: list[EncodableT] = []
        # A thread's fields stay in one op (the script unpacks none of them, so a thread of
        # thousands of members is no limit); ops are cut between threads.
        for thread_id, (had, start, value, chunks) in threads.items():
            if group and len(group) + len(chunks) + 3 > OP_ARGS - len(head) - 1:
                self.ops += ["tput", str(len(head) + len(group) + 1), index, *head, *group]
                group = []
            group += [thread_id, f"{start + len(chunks)}:{had}:{start}", value, *chunks]
        if group:
            self.ops += ["tput", str(len(head) + len(group) + 1), index, *head, *group]

    def tdel(self, thread_ids: list[str]) -> None:
        """Threads' heads and chunks out of their buckets."""
        head: list[EncodableT] = [self._account.thread_bucket("")]
        for start in range(0, len(thread_ids), OP_ARGS - 2):
            args = [*head, *thread_ids[start : start + OP_ARGS - 2]]
            self._op("tdel", self._account.meta, args, len(args))

    def refs_put(self, refs: Mapping[bytes, str]) -> None:
        """Message-ID keys -> thread in the linear-hashed thread-refs buckets."""
        flat: list[EncodableT] = []
        for ref, thread_id in refs.items():
            flat += [ref, thread_id]
        if flat:
            prefix: EncodableT = self._account.thread_ref_bucket("")
            index = self._key(self._account.meta)
            for start in range(0, len(flat), OP_ARGS):
                part = flat[start : start + OP_ARGS]
                self.ops += ["refs_put", len(part) + 2, index, prefix, *part]

    def rput(self, numbers_key: str, generation: str, records: Mapping[str, bytes]) -> None:
        """Encoded email records into their buckets (gateway.cache.record_buckets), written
        only while the mailbox numbers they were encoded with are of ``generation``."""
        flat: list[EncodableT] = []
        for email_id, value in records.items():
            flat += [email_id, value]
        head: list[EncodableT] = [
            self._key(numbers_key),
            generation,
            self._account.record_bucket(""),
        ]
        for start in range(0, len(flat), OP_ARGS - len(head) - 1):
            args = [*head, *flat[start : start + OP_ARGS - len(head) - 1]]
            self._op("rput", self._account.meta, args, len(args))

    def rdel(self, email_ids: list[str]) -> None:
        """Email records out of their buckets."""
        head: list[EncodableT] = [self._account.record_bucket("")]
        for start in range(0, len(email_ids), OP_ARGS - 2):
            args = [*head, *email_ids[start : start + OP_ARGS - 2]]
            self._op("rdel", self._account.meta, args, len(args))

    def drop_buckets(self, directory: str, prefix: str) -> None:
        """Delete the set ``directory`` and the keys ``prefix + n`` for each n it lists."""
        self._op("drop_buckets", directory, [prefix], 1)

    def delete(self, *keys: str) -> None:
        if keys:
            indexes: list[EncodableT] = [self._key(k) for k in keys]
            self.ops += ["delete", len(indexes), *indexes]

    def log(self, data_type: str, mode: str, floor_field: str, pairs: list[str]) -> None:
        """The change log of one type (see SCRIPT); answers [epoch, modseq] in the reply."""
        k = self._account
        logs = (k.changed, k.born, k.dead, k.full, k.lapse_from, k.lapse_to)
        args: list[EncodableT] = [self._key(key(data_type)) for key in logs]
        args += [data_type, mode, floor_field, *pairs]
        self.ops += ["log", len(args), *args]

    def raise_floor(self, data_type: str, floor_field: str) -> None:
        """The type's floor to its current modseq: older states cannot be calculated from."""
        self.ops += ["floor", 3, self._key(self._account.meta), data_type, floor_field]

    async def run(
        self, client: Redis | RedisCluster, lease: tuple[str, str] | None
    ) -> list[list[Any]] | None:
        """Apply the ops in one script; the [epoch, modseq] of each log op, or None if the
        lease (key, token) is not held."""
        keys = list(self.keys)
        keys[0], token = lease if lease is not None else (self._account.meta, "")
        epoch = secrets.token_hex(EPOCH_CHARS // 2)
        packed = pack_ops([token, epoch, *self.ops])
        reply = await client.register_script(SCRIPT)(
            keys=keys, args=[token, packed, INDEX_FORMAT_FIELD, INDEX_FORMAT]
        )
        if not reply or int(reply[0]) != 1:
            return None
        return list(reply[1:])


def pack_ops(args: list[EncodableT]) -> bytes:
    """The script's argument list as one msgpack array of strings (see SCRIPT).

    Strings and octets go as msgpack raw strings (``use_bin_type=False``: Redis's cmsgpack
    predates the bin types), so NULs and any octets pass unchanged; numbers are written out
    here, as redis-py would put them in an argument, since cmsgpack would hand them to Lua
    as doubles (a large integer would lose digits)."""
    packed: bytes = msgpack.packb(
        [
            a
            if type(a) is str or type(a) is bytes
            else str(a)
            if type(a) is int
            else _as_argument(a)
            for a in args
        ],
        use_bin_type=False,
    )
    return packed


def _as_argument(value: EncodableT) -> bytes | str:
    """A value other than str and bytes as redis-py's Encoder writes it into a command."""
    if isinstance(value, bytes | str):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        # redis-py refuses these too rather than guessing a form.
        raise DataError(f"Invalid input of type: {type(value).__name__!r} in an index batch")
    return str(int(value)) if isinstance(value, int) else repr(float(value))
