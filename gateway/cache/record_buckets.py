"""Hash tables kept as many small Redis hashes by linear hashing: email records, thread-refs.

Redis keeps a hash of at most 128 fields, none longer than 64 octets, as a listpack: a few
octets per entry where one big hash costs a hashtable entry (~50 octets) per field. So a
large table lives in buckets ``<prefix><n>`` of about ``load`` entries; the account's meta
hash holds the table's ``<name>-level``, ``<name>-split`` and ``<name>-count``. A key's bucket
is its hash modulo 2^level, or modulo 2^(level+1) for the buckets below the split pointer;
when the table holds more than ``load`` entries per bucket, the bucket at the split pointer is
split in two (its entries hashing to the new bucket move there): one bucket at a time, inside
the write script, so the table grows without ever rehashing all of it. Buckets are never
merged or removed while the table lives (an emptied one simply vanishes in Redis).

Unsplit buckets hold up to twice the load at the end of a round, so the load is well under
128; the split rewrites both halves, so a bucket that overflowed into a hashtable once is a
listpack again after its split.

The Lua functions are shared by the write script (gateway.cache.index_script, ops ``rput``,
``rdel`` and ``refs_put``) and the read scripts (gateway.cache.emails), so a writer and a
reader cannot disagree on a key's bucket. An email record's hash is the last eight octets
of its id read as a base-31 number (exact in Lua's doubles): ids are digests (the gateway's,
Dovecot's GUIDs, Cyrus's), whose last characters vary most. It is the warm Email/get's cost
per id in Redis, so it is cheap: ``redis.sha1hex`` cost twice as much as the HGET it serves.
A server's ids that spread poorly (sequential numbers) only cost memory, never a wrong
answer: a bucket past 128 entries is a hashtable until its split.
"""

from __future__ import annotations

from collections.abc import Sequence

# Email records per bucket on average (see above: unsplit buckets reach twice this).
RECORD_LOAD = 48
# The meta fields' prefix of the records' table.
RECORDS = "records"

BUCKET_LUA = (
    f"local RECORD_LOAD = {RECORD_LOAD}\n"
    + """
local function bucket_shape(meta, name)
  local f = redis.call('HMGET', meta, name .. '-level', name .. '-split', name .. '-count')
  return tonumber(f[1] or '0'), tonumber(f[2] or '0'), tonumber(f[3] or '0')
end
local function bucket_of(prefix, h, level, split)
  local n = h % (2 ^ level)
  if n < split then
    n = h % (2 ^ (level + 1))
  end
  return prefix .. n
end
local bucket_byte = string.byte
local function bucket_record_hash(id)
  local a, b, c, d, e, f, g, h = bucket_byte(id, -8, -1)
  local v = ((a * 31 + (b or 0)) * 31 + (c or 0)) * 31 + (d or 0)
  return (((v * 31 + (e or 0)) * 31 + (f or 0)) * 31 + (g or 0)) * 31 + (h or 0)
end
-- The keys args[from], args[from + step], ... up to args[to] by bucket: the buckets in the
-- order first met, and per bucket the keys' indexes in args (so one command per bucket).
-- ``args`` is passed, not read as ARGV: the write script reads its ops from a table it
-- unpacked (gateway.cache.index_script), which a function defined here cannot see.
local function bucket_group(args, prefix, hash, level, split, from, to, step)
  local order, groups = {}, {}
  for i = from, to, step do
    local bucket = bucket_of(prefix, hash(args[i]), level, split)
    local group = groups[bucket]
    if not group then
      group = {}
      groups[bucket] = group
      order[#order + 1] = bucket
    end
    group[#group + 1] = i
  end
  return order, groups
end
-- HSET of field, value, ... in slices: Lua's unpack() fails past ~8,000 values, and a split
-- must not fail after its DEL (a batch is all or nothing; a bucket a stranger's crafted
-- Message-IDs crowded can be that large).
local function bucket_hset(key, flat)
  local added = 0
  for s = 1, #flat, 1000 do
    added = added + redis.call('HSET', key, unpack(flat, s, math.min(s + 999, #flat)))
  end
  return added
end
-- Split buckets while the table holds more than load entries per bucket; saves the shape.
local function bucket_grow(meta, name, prefix, load, hash, level, split, count)
  while count > load * (2 ^ level + split) do
    local from = prefix .. string.format('%d', split)
    local to = prefix .. string.format('%d', split + 2 ^ level)
    local entries = redis.call('HGETALL', from)
    local high = 2 ^ (level + 1)
    local kept, moved = {}, {}
    for k = 1, #entries, 2 do
      local side = (hash(entries[k]) % high == split) and kept or moved
      side[#side + 1] = entries[k]
      side[#side + 1] = entries[k + 1]
    end
    if #moved > 0 then
      redis.call('DEL', from)
      bucket_hset(from, kept)
      bucket_hset(to, moved)
    end
    split = split + 1
    if split == 2 ^ level then
      level, split = level + 1, 0
    end
  end
  redis.call('HSET', meta, name .. '-level', level, name .. '-split', split,
    name .. '-count', count)
end
"""
)


def bucket_count(shape: Sequence[bytes | str | None]) -> int:
    """How many buckets a table of this (level, split) has."""
    level, split = (int(v or 0) for v in shape[:2])
    return (1 << level) + split


def shape_fields(name: str) -> list[str]:
    """The meta fields of a table's shape: level, split pointer, entry count."""
    return [f"{name}-level", f"{name}-split", f"{name}-count"]
