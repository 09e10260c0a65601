"""Sorted sets kept as chunks of at most 128 members: the by-date and query sets of the index.

A Redis zset of more than 128 members (``zset-max-listpack-entries``, default 128) is a
skiplist plus a dict: about 129 octets per member for an email id scored by its date
(bench.index_memory), against about 30 in a listpack. The by-date sets (``dated``,
``dated:<m>``) and the sparse query sets (``unseen:<m>``, ``flagged[:<m>]``) hold every email
once or twice, so they are kept as many small zsets instead. A set named ``N`` is:

* ``N#<n>``: the chunks, zsets of at most CHUNK_MAX members, each holding one contiguous
  range of the set's order (score, then member octet by octet, as Redis orders a zset), so
  Redis keeps each one a listpack. A chunk never grows past CHUNK_MAX, not even for a moment
  inside the script: Redis does not turn a skiplist back into a listpack when it shrinks.
* ``N#d``: the directory, a zset of one entry per chunk scored by the chunk's lowest score,
  the member ``<lowest member>\\0<n>``: equal lowest scores then order by member, as the
  chunks do. A member's chunk is found by its score (ZCOUNT) and, among chunks starting at
  that same score, a binary search on their lowest members.
* ``N#m``: a hash with the set's member count ``n`` (the window's total without counting
  the chunks) and ``next``, the last chunk number given out.

Writes (ops ``cadd``, ``crem`` of the index script, gateway.cache.index_script) carry the
batch's members sorted by (score, member): the script finds the chunk of the first one, takes
every following member below the next chunk's start in the same ZADD/ZREM, and goes on from
there, so the first sync's pages (mostly ascending dates) cost a few calls per chunk filled,
not per member. A chunk that would pass CHUNK_MAX is rewritten with its new members as
several: into full chunks when members are appended after the set's end (the first sync),
else into even halves, leaving room. A chunk left under CHUNK_MIN merges into a neighbour
that has room; an emptied one goes.

Removing a member needs its score (to find its chunk without a member -> chunk map, which
would cost as much as the skiplist's dict): the sets are scored by receivedAt, which never
changes for an email id.

Reads (:func:`read_window`) are ONE script: the count, the Email state (modseq and epoch,
read at the same instant as the members) and the window, from either end. A window from the
end (newest first, the list screen) walks the directory from its end: one or two chunks. A
deep position walks chunk sizes (ZCARD) from the nearer end; an anchor tries each chunk
(ZSCORE) in order: O(n / CHUNK_MAX) calls inside the one script.

Why not one key per set with member -> chunk in a hash, or a B-tree of several levels: the
first costs per member what the skiplist's dict did; the second is not needed at these sizes
(a 100,000-email folder has under 1,600 chunks, one directory zset of that many entries).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.cache.codec import text

# Members per chunk at most: Redis's default zset-max-listpack-entries (D2: no setting
# asked of operators).
CHUNK_MAX: Final = 128
# A chunk smaller than this after removals merges into a neighbour with room.
CHUNK_MIN: Final = 32

# Lua helpers of the write script (concatenated in front of it, like REF_HASHING) and of the
# read script. Members are compared octet by octet: Lua's own string < follows the server's
# locale (strcoll), Redis's zset order is memcmp.
CHUNK_LUA = r"""
local CHUNK_MAX, CHUNK_MIN = 128, 32
local function chunk_lt(s1, m1, s2, m2)
  s1, s2 = tonumber(s1), tonumber(s2)
  if s1 ~= s2 then return s1 < s2 end
  if m1 == m2 then return false end
  for k = 1, math.min(#m1, #m2) do
    local a, b = string.byte(m1, k), string.byte(m2, k)
    if a ~= b then return a < b end
  end
  return #m1 < #m2
end
-- The directory's entry at rank r: {lowest member, chunk key, lowest score, entry, number}.
local function chunk_at(dir, r)
  if r < 0 then return nil end
  local got = redis.call('ZRANGE', dir, r, r, 'WITHSCORES')
  if #got == 0 then return nil end
  local cut = string.find(got[1], '\0', 1, true)
  local number = string.sub(got[1], cut + 1)
  return {string.sub(got[1], 1, cut - 1), string.sub(dir, 1, -2) .. number, got[2], got[1], number}
end
-- A chunk's members as ZADD takes them: score, member, ...
local function chunk_pairs(key)
  local got = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local flat = {}
  for x = 1, #got, 2 do
    flat[x], flat[x + 1] = got[x + 1], got[x]
  end
  return flat
end
-- The rank of the chunk whose range holds (s, m): the last one starting at or below it;
-- -1 when it sorts before every chunk.
local function chunk_find(dir, s, m)
  local below = redis.call('ZCOUNT', dir, '-inf', '(' .. s)
  local lo, hi = 0, redis.call('ZCOUNT', dir, s, s)
  while lo < hi do
    local mid = math.floor((lo + hi + 1) / 2)
    if chunk_lt(s, m, s, chunk_at(dir, below + mid - 1)[1]) then
      hi = mid - 1
    else
      lo = mid
    end
  end
  return below + lo - 1
end
-- Sorted pairs all[1..] as chunks: the first one numbered `number` (nil: a new one), full
-- ones when appending at the set's end, else even ones.
local function chunk_write(dir, all, number, full)
  local prefix = string.sub(dir, 1, -2)
  local count = #all / 2
  local pieces = math.ceil(count / CHUNK_MAX)
  local each = full and CHUNK_MAX or math.ceil(count / pieces)
  for p = 0, pieces - 1 do
    local from, to = p * each * 2 + 1, math.min(count, (p + 1) * each) * 2
    if from < to then
      local n = number
      if p > 0 or n == nil then
        n = string.format('%d', redis.call('HINCRBY', prefix .. 'm', 'next', 1))
      end
      redis.call('ZADD', prefix .. n, unpack(all, from, to))
      redis.call('ZADD', dir, all[from], all[from + 1] .. '\0' .. n)
    end
  end
end
-- args[first..last] (the op's arguments): (score, member) pairs sorted ascending, joining.
local function chunk_add(dir, args, first, last)
  local meta = string.sub(dir, 1, -2) .. 'm'
  local j = first
  while j <= last do
    local r = math.max(0, chunk_find(dir, args[j], args[j + 1]))
    local here, after = chunk_at(dir, r), chunk_at(dir, r + 1)
    local k = j
    while k <= last and (after == nil or chunk_lt(args[k], args[k + 1], after[3], after[1])) do
      k = k + 2
    end
    local size = here and redis.call('ZCARD', here[2]) or 0
    if here and size + (k - j) / 2 <= CHUNK_MAX then
      redis.call('HINCRBY', meta, 'n', redis.call('ZADD', here[2], unpack(args, j, k - 1)))
      if chunk_lt(args[j], args[j + 1], here[3], here[1]) then
        redis.call('ZREM', dir, here[4])
        redis.call('ZADD', dir, args[j], args[j + 1] .. '\0' .. here[5])
      end
    else
      local old = here and chunk_pairs(here[2]) or {}
      local all, a, b = {}, 1, j
      while a <= #old or b < k do
        if a <= #old and b < k and old[a + 1] == args[b + 1] then
          b = b + 2
        elseif b >= k or (a <= #old and chunk_lt(old[a], old[a + 1], args[b], args[b + 1])) then
          all[#all + 1] = old[a]
          all[#all + 1] = old[a + 1]
          a = a + 2
        else
          all[#all + 1] = args[b]
          all[#all + 1] = args[b + 1]
          b = b + 2
        end
      end
      local appended = after == nil
        and (#old == 0 or chunk_lt(old[#old - 1], old[#old], args[j], args[j + 1]))
      if here then
        redis.call('DEL', here[2])
        redis.call('ZREM', dir, here[4])
      end
      chunk_write(dir, all, here and here[5], appended)
      redis.call('HINCRBY', meta, 'n', #all / 2 - size)
    end
    j = k
  end
end
-- After removals from the chunk `here` at rank r: drop it if empty, merge it into a
-- neighbour if small, renew its directory entry (its lowest member may have gone).
local function chunk_tidy(dir, r, here, after)
  local size = redis.call('ZCARD', here[2])
  redis.call('ZREM', dir, here[4])
  if size == 0 then return end
  if size < CHUNK_MIN then
    local before = chunk_at(dir, r - 1)
    if before and redis.call('ZCARD', before[2]) + size <= CHUNK_MAX then
      redis.call('ZADD', before[2], unpack(chunk_pairs(here[2])))
      redis.call('DEL', here[2])
      return
    end
    if after and redis.call('ZCARD', after[2]) + size <= CHUNK_MAX then
      redis.call('ZADD', here[2], unpack(chunk_pairs(after[2])))
      redis.call('DEL', after[2])
      redis.call('ZREM', dir, after[4])
    end
  end
  local low = redis.call('ZRANGE', here[2], 0, 0, 'WITHSCORES')
  redis.call('ZADD', dir, low[2], low[1] .. '\0' .. here[5])
end
-- args[first..last]: (score, member) pairs sorted ascending, leaving the set.
local function chunk_remove(dir, args, first, last)
  local meta = string.sub(dir, 1, -2) .. 'm'
  local j = first
  while j <= last do
    local r = chunk_find(dir, args[j], args[j + 1])
    local here, after = chunk_at(dir, r), chunk_at(dir, r + 1)
    local k = j + 2
    while k <= last and (after == nil or chunk_lt(args[k], args[k + 1], after[3], after[1])) do
      k = k + 2
    end
    if here then
      local names = {}
      for x = j + 1, k - 1, 2 do
        names[#names + 1] = args[x]
      end
      local gone = redis.call('ZREM', here[2], unpack(names))
      if gone > 0 then
        redis.call('HINCRBY', meta, 'n', -gone)
        chunk_tidy(dir, r, here, after)
      end
    end
    j = k
  end
end
"""

# KEYS: the set (its directory ``N#d``, or a plain zset), the state hash, the meta hash, then
# optionally a hash to read one field of. ARGV: 'c' (chunked) or 'p' (plain), '1' ascending
# or '0', the position, the anchor or '', the anchor offset, the limit or '', the data type
# whose modseq to read, an idle expiry to push back (plain sets) or '', that hash's field.
# Answers {-1} for an anchor not in the set, {-2} for a plain set that does not exist, else
# {start, total, modseq, epoch, field, ids...}.
_READ_WINDOW = (
    CHUNK_LUA
    + r"""
local key, plain, ascending = KEYS[1], ARGV[1] == 'p', ARGV[2] == '1'
if ARGV[8] ~= '' and redis.call('EXPIRE', key, ARGV[8]) == 0 then
  return {-2}
end
local chunks = plain and 0 or redis.call('ZCARD', key)
-- Chunk keys by directory rank, the directory read 32 entries at a time in the walk's
-- direction (step 1 or -1).
local names = {}
local function chunk_name(r, step)
  if not names[r] then
    local a = step > 0 and r or math.max(0, r - 31)
    local got = redis.call('ZRANGE', key, a, a + 31)
    for x = 1, #got do
      local cut = string.find(got[x], '\0', 1, true)
      names[a + x - 1] = string.sub(key, 1, -2) .. string.sub(got[x], cut + 1)
    end
  end
  return names[r]
end
local total
if plain then
  total = redis.call('ZCARD', key)
else
  total = tonumber(redis.call('HGET', string.sub(key, 1, -2) .. 'm', 'n') or '0')
end
local start
if ARGV[4] ~= '' then
  local rank
  if plain then
    rank = redis.call(ascending and 'ZRANK' or 'ZREVRANK', key, ARGV[4])
  else
    local before = 0
    for r = 0, chunks - 1 do
      local chunk = chunk_name(r, 1)
      local within = redis.call('ZRANK', chunk, ARGV[4])
      if within then
        rank = before + within
        if not ascending then rank = total - 1 - rank end
        break
      end
      before = before + redis.call('ZCARD', chunk)
    end
  end
  if not rank then return {-1} end
  start = math.max(0, rank + tonumber(ARGV[5]))
else
  start = tonumber(ARGV[3])
  if start < 0 then start = math.max(0, total + start) end
end
local out = {start, total, redis.call('HGET', KEYS[2], ARGV[7]) or false,
  redis.call('HGET', KEYS[3], 'epoch') or false, false}
if KEYS[4] then out[5] = redis.call('HGET', KEYS[4], ARGV[9]) or false end
local count = total - start
if ARGV[6] ~= '' then count = math.min(count, tonumber(ARGV[6])) end
if count <= 0 then return out end
if plain then
  local ids = redis.call(ascending and 'ZRANGE' or 'ZREVRANGE', key, start, start + count - 1)
  for x = 1, #ids do out[#out + 1] = ids[x] end
  return out
end
-- The window's first member in ascending order, and the chunk holding it (walking from the
-- nearer end of the directory).
local first = ascending and start or total - start - count
local r, before = 0, 0
if first < total / 2 then
  while r < chunks - 1 do
    local size = redis.call('ZCARD', chunk_name(r, 1))
    if before + size > first then break end
    before, r = before + size, r + 1
  end
else
  r, before = chunks - 1, total
  while r > 0 do
    before = before - redis.call('ZCARD', chunk_name(r, -1))
    if before <= first then break end
    r = r - 1
  end
  if r == 0 then before = 0 end
end
local ids, offset = {}, first - before
while #ids < count and r < chunks do
  local got = redis.call('ZRANGE', chunk_name(r, 1), offset, offset + count - #ids - 1)
  for x = 1, #got do ids[#ids + 1] = got[x] end
  offset, r = 0, r + 1
end
if ascending then
  for x = 1, #ids do out[#out + 1] = ids[x] end
else
  for x = #ids, 1, -1 do out[#out + 1] = ids[x] end
end
return out
"""
)

_ANCHOR_ABSENT = -1
_SET_ABSENT = -2


def directory(name: str) -> str:
    """The directory key of chunked set ``name`` (the key the index script's ops name)."""
    return f"{name}#d"


def chunk_meta(name: str) -> str:
    return f"{name}#m"


def chunk_key(name: str, number: int | str) -> str:
    return f"{name}#{number}"


def sort_members(members: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """Members in the set's order, (score, member): Python orders str by code point, which
    is the order of their UTF-8 octets, as Redis and CHUNK_LUA compare them."""
    return sorted(members, key=lambda item: (item[1], item[0]))


@dataclass(frozen=True)
class Slice:
    """A window read in one script: where it starts, the ids, the total, and the values read
    at the same instant (the data type's modseq, the epoch, an extra hash field)."""

    position: int
    ids: list[str]
    total: int
    modseq: int
    epoch: str | None
    field: str | None


class SetAbsent(Exception):
    """A plain set read with ``refresh`` does not exist."""


async def read_window(
    client: Redis | RedisCluster,
    name: str,
    *,
    state_key: str,
    meta_key: str,
    data_type: str,
    ascending: bool,
    position: int,
    anchor: str | None,
    anchor_offset: int,
    limit: int | None,
    plain: bool = False,
    refresh: int | None = None,
    field: tuple[str, str] | None = None,
) -> Slice | None:
    """A window of set ``name`` (chunked, or with ``plain`` a plain zset) in one script;
    None if ``anchor`` is not in it.

    RFC 8620 5.5: a negative position counts from the end; an anchor plus anchorOffset,
    clamped to 0, replaces the position. ``refresh`` (plain sets): push the key's idle expiry
    back this many seconds, :class:`SetAbsent` if it is not there. ``field``: (hash, field)
    read at the same instant too."""
    keys = [name if plain else directory(name), state_key, meta_key]
    if field is not None:
        keys.append(field[0])
    args = [
        "p" if plain else "c",
        "1" if ascending else "0",
        position,
        anchor if anchor is not None else "",
        anchor_offset,
        "" if limit is None else limit,
        data_type,
        "" if refresh is None else refresh,
        "" if field is None else field[1],
    ]
    reply = await client.register_script(_READ_WINDOW)(keys=keys, args=args)
    start = int(reply[0])
    if start == _SET_ABSENT:
        raise SetAbsent(name)
    if start == _ANCHOR_ABSENT:
        return None
    _, total, modseq, epoch, extra, *ids = reply
    return Slice(
        position=start,
        ids=[text(i) for i in ids],
        total=int(total),
        modseq=int(modseq or 0),
        epoch=None if epoch is None else text(epoch),
        field=None if extra is None else text(extra),
    )


async def chunked_keys(client: Redis | RedisCluster, names: Iterable[str]) -> list[str]:
    """Every key of the chunked sets ``names`` (directory, count, chunks), and the names
    themselves (a set of index format 2 was a plain zset under its name): for a reset."""
    wanted = list(dict.fromkeys(names))
    async with client.pipeline(transaction=False) as pipe:
        for name in wanted:
            pipe.zrange(directory(name), 0, -1)
        entries = await pipe.execute()
    found: list[str] = []
    for name, listed in zip(wanted, entries, strict=True):
        found += [name, directory(name), chunk_meta(name)]
        found += [chunk_key(name, text(e).rpartition("\0")[2]) for e in listed]
    return found
