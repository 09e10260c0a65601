"""The thread index as listpack-sized hashes: one linear-hashed table of a thread's parts.

Index format 4 keeps everything the index knows about a thread in ``threads:<n>`` buckets
(gateway.cache.record_buckets: linear hashing, one bucket split at a time in the write
script, about :data:`THREAD_LOAD` fields a bucket), every field and value at most 64 octets so
Redis keeps each bucket a compact listpack. A thread ``T`` is up to three kinds of fields,
all in the bucket of ``T``'s hash (the last 8 octets of the text after the field's last
``.``: ids never hold a dot):

- ``T``, the head, while the thread has visible members: one octet counting its chunks,
  then msgpack ``[unread, [mailbox number, members in it, ...], [receivedAt, email id,
  ...]]``, the first members (oldest first) as many as fit in 64 octets; mailboxes by their
  numbers (gateway.cache.mailbox_numbers), so a head is written only while the numbers are
  of the generation it was encoded with;
- ``<k>.T`` for k = 1, 2, ...: the next members, msgpack ``[receivedAt, email id, ...]``,
  as many as fit in 64 octets each (three of the gateway's own ids, which go as 14 octets:
  see pack_member);
- ``r.T`` (the gateway's own threads only, while the thread has email records, visible or
  not): ``<records>:<subject digest><ref hashes>`` (up to :data:`FIRST_HASHES` of them)
  and, when the hashes do not fit, ``r2.T``, ``r3.T``... with 16 more each, append-only: a
  link writes ``r.T`` and the last field, never the full ones between. The subject digest
  (8 octets of BLAKE2b of the normalised subject) is what threading compares
  (gateway.sync.threads); a ref hash is the first 4 octets of a ``thread-refs`` key, all
  its bucket depends on: when the thread loses its last record, every entry of those
  buckets naming the thread goes (once in its life, each hash costing one scan of a
  bucket of about 48 entries: the ``seen`` buckets are scanned once).

In format 3 these were three big hashes (``threads``, ``thread-members``,
``thread-subjects``): one hashtable entry per thread each, mailbox ids in full, 12-octet
keys and whole subjects; ``bench.index_memory`` measures the difference.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

from gateway.cache.codec import octets, unpack
from gateway.cache.keys import INDEX_FORMAT_FIELD
from gateway.cache.record_buckets import BUCKET_LUA

# The meta fields' prefix of the thread table; ``threads-heads`` counts the threads with
# visible members (Thread/query's total without reading the table).
THREADS = "threads"
HEADS_FIELD = "threads-heads"
# Fields per bucket on average (unsplit buckets reach twice this, under Redis's 128).
THREAD_LOAD = 48
# Redis keeps a hash compact while every field and value is at most this long
# (hash-max-listpack-value's default).
LISTPACK_VALUE = 64
# What a links field holds where no subject was recorded: compared with digests only, and a
# digest this value is as likely as any other collision (2^-64).
NO_SUBJECT = b"\0" * 8
SUBJECT_OCTETS = 8
# Octets of a thread-refs key kept in a links field: its bucket depends on them alone.
REF_HASH_OCTETS = 4
# Ref hashes the first links field takes, whatever its record count (up to 7 digits), so
# later hashes only ever append to the last field.
FIRST_HASHES = 12

# The table's Lua, for scripts that hold BUCKET_LUA already (the write script).
THREAD_FUNCTIONS = (
    f"""
local THREAD_LOAD = {THREAD_LOAD}
local NO_SUBJECT = string.rep('\\0', {SUBJECT_OCTETS})
local FIRST_HASHES = {FIRST_HASHES}
"""
    + """
-- The hash of a thread table field: of the thread id after its last dot.
local function thread_hash(field)
  return bucket_record_hash(string.match(field, '[^.]*$'))
end
local function thread_bucket(prefix, thread, level, split)
  return bucket_of(prefix, bucket_record_hash(thread), level, split)
end
-- A thread's head and member chunks: the head's first octet counts them (255: that many
-- or more, then read until one is missing).
local function thread_chunks(bucket, thread, head)
  local parts, n = {head}, string.byte(head, 1)
  for k = 1, n do
    parts[k + 1] = redis.call('HGET', bucket, k .. '.' .. thread)
  end
  if n == 255 then
    local k = n + 1
    while true do
      local more = redis.call('HGET', bucket, k .. '.' .. thread)
      if not more then
        return parts
      end
      parts[k + 1] = more
      k = k + 1
    end
  end
  return parts
end
-- Delete a thread's member chunks from the k-th to the ``had``-th (nil: while present);
-- how many went.
local function thread_chunks_drop(bucket, thread, k, had)
  local gone = 0
  while had == nil or k <= had do
    local one = redis.call('HDEL', bucket, k .. '.' .. thread)
    if one == 0 and had == nil then
      return gone
    end
    gone, k = gone + one, k + 1
  end
  return gone
end
-- The name of a thread's k-th links field.
local function links_field(k, thread)
  return (k == 1 and 'r.' or 'r' .. k .. '.') .. thread
end
-- A thread's links fields joined ('<count>:<digest><hashes>') and how many there are: the
-- fields are r.T, r2.T, ... with none missing in between.
local function links_read(bucket, thread)
  local first = redis.call('HGET', bucket, 'r.' .. thread)
  if not first then
    return nil, 0
  end
  local parts = {first}
  while true do
    local more = redis.call('HGET', bucket, links_field(#parts + 1, thread))
    if not more then
      return table.concat(parts), #parts
    end
    parts[#parts + 1] = more
  end
end
-- How many links fields a thread has (0: none), by doubling then halving on HEXISTS: a
-- long thread's last field is found with O(log n) probes, none of them read whole.
local function links_count(bucket, thread)
  if redis.call('HEXISTS', bucket, 'r.' .. thread) == 0 then
    return 0
  end
  local low, high = 1, 2
  while redis.call('HEXISTS', bucket, links_field(high, thread)) == 1 do
    low, high = high, high * 2
  end
  while high - low > 1 do
    local middle = math.floor((low + high) / 2)
    if redis.call('HEXISTS', bucket, links_field(middle, thread)) == 1 then
      low = middle
    else
      high = middle
    end
  end
  return low
end
-- Set a thread's links: its record count and subject digest ('' keeps the stored ones;
-- none stored: 0 and NO_SUBJECT), and ref hashes appended (append-only: those already in
-- the last field or repeated are skipped; r.T takes FIRST_HASHES, later fields 16 each).
-- Writes r.T and the last field (and new ones for the hashes that do not fit), never the
-- full ones before it; returns how many fields the table gained.
local function links_append(bucket, thread, records, digest, adds)
  local first = redis.call('HGET', bucket, 'r.' .. thread)
  local hashes = ''
  if first then
    local colon = string.find(first, ':', 1, true)
    if records == '' then
      records = string.sub(first, 1, colon - 1)
    end
    if digest == '' then
      digest = string.sub(first, colon + 1, colon + 8)
    end
    hashes = string.sub(first, colon + 9)
  end
  if records == '' then
    records = '0'
  end
  if digest == '' then
    digest = NO_SUBJECT
  end
  -- A second field exists only behind a full first one (FIRST_HASHES, or over 60 octets as
  -- the first layout of format 4 filled it): otherwise no probe.
  local k = 1
  if first and (#hashes >= FIRST_HASHES * 4 or #first > 60) then
    k = links_count(bucket, thread)
  end
  local last = k == 1 and hashes or redis.call('HGET', bucket, links_field(k, thread))
  local seen = {}
  for r = 1, #last - 3, 4 do
    seen[string.sub(last, r, r + 3)] = true
  end
  local parts, cap = {last}, k == 1 and FIRST_HASHES * 4 or 64
  for r = 1, #adds - 3, 4 do
    local hash = string.sub(adds, r, r + 3)
    if not seen[hash] then
      seen[hash] = true
      if #parts[#parts] >= cap then
        parts[#parts + 1], cap = '', 64
      end
      parts[#parts] = parts[#parts] .. hash
    end
  end
  local added = 0
  if k == 1 then
    hashes = parts[1]
  elseif #parts > 1 or parts[1] ~= last then
    redis.call('HSET', bucket, links_field(k, thread), parts[1])
  end
  added = added + redis.call('HSET', bucket, 'r.' .. thread, records .. ':' .. digest .. hashes)
  for p = 2, #parts do
    added = added + redis.call('HSET', bucket, links_field(k + p - 1, thread), parts[p])
  end
  return added
end
"""
)
THREAD_LUA = BUCKET_LUA + THREAD_FUNCTIONS


def subject_digest(subject: str) -> bytes:
    """What threading compares of a normalised subject (gateway.sync.threads)."""
    return hashlib.blake2b(subject.encode(), digest_size=SUBJECT_OCTETS).digest()


def ref_hash(ref: bytes) -> bytes:
    """The part of a thread-refs key a links field keeps."""
    return ref[:REF_HASH_OCTETS]


# An id of the gateway's own form (gateway.sync.threads.digest_id: a letter and 100 bits in
# lower-case base32), kept in a member list as 14 octets (the letter, then the bits): a
# msgpack bin, where any other id stays a str.
_DIGEST_ID = re.compile(r"[a-z][a-z2-7]{20}")
# Its base32 digits as int() reads base 32 (0-9, a-v), and pairs of digits back.
_TO_INT_DIGITS = str.maketrans(
    "abcdefghijklmnopqrstuvwxyz234567", "0123456789abcdefghijklmnopqrstuv"
)
_PAIRS = tuple(
    a + b for a in "abcdefghijklmnopqrstuvwxyz234567" for b in "abcdefghijklmnopqrstuvwxyz234567"
)
_SHIFTS = range(90, -1, -10)


_digest_form = _DIGEST_ID.fullmatch


def pack_member(received_at: int, email_id: str) -> bytes:
    """A member (receivedAt, email id) as a member list holds it, msgpack-encoded: a
    receivedAt of 32 bits as a uint32, an id of the gateway's form as 14 octets of bin."""
    if 0 <= received_at < 1 << 32:
        time = b"\xce" + received_at.to_bytes(4, "big")
    else:
        time = bytes(msgpack.packb(received_at))
    if _digest_form(email_id) is None:
        return time + bytes(msgpack.packb(email_id))
    bits = int(email_id[1:].translate(_TO_INT_DIGITS), 32)
    return time + b"\xc4\x0e" + email_id[0].encode() + bits.to_bytes(13, "big")


def unpack_id(value: str | bytes) -> str:
    if isinstance(value, str):
        return value
    bits = int.from_bytes(value[1:], "big")
    return chr(value[0]) + "".join([_PAIRS[(bits >> shift) & 1023] for shift in _SHIFTS])


def encode_thread(
    unread: int,
    mailboxes: Mapping[int, int],
    members: Sequence[Sequence[Any]],
    stored: Sequence[bytes] = (),
) -> list[bytes]:
    """A thread's head and member chunks: each at most 64 octets where a member fits, at
    most 7 members (a fixarray of pairs); a member longer than a chunk is a chunk of its own.

    ``mailboxes``: mailbox number -> members in it; ``members``: [receivedAt, email id],
    oldest first. ``stored``: the head and chunks the thread has now (as READ_THREADS read
    them): the parts before the one holding the first changed member keep their cut, so a
    rewrite changes only the head and the chunks from there on (an append the last chunk or
    a new one, a flag change the head alone) and the write sends only those."""
    flat: list[int] = [x for number, n in sorted(mailboxes.items()) for x in (number, n)]
    # The head's first octet counts the chunks (at most 255), known once they are cut; a
    # fixarray's header takes one more.
    head = b"\x93" + msgpack.packb(unread) + msgpack.packb(flat)
    pieces = [pack_member(received_at, email_id) for received_at, email_id in members]
    kept = _kept_cut(stored, pieces, LISTPACK_VALUE - len(head) - 2)
    if kept is None:
        fields = _cut(pieces, LISTPACK_VALUE - len(head) - 2, head=True)
    else:
        in_head, chunks, start = kept
        fields = [b"".join(pieces[:in_head]), *chunks, *_cut(pieces[start:], LISTPACK_VALUE - 1)]
        fields[0] = bytes([0x90 | 2 * in_head]) + fields[0]
    return [bytes([min(255, len(fields) - 1)]) + head + fields[0], *fields[1:]]


def _cut(pieces: Sequence[bytes], room: int, *, head: bool = False) -> list[bytes]:
    """Members cut greedily into parts (the head's room first when ``head``), each a
    fixarray of at most 7 pairs; a member longer than the room is a part of its own."""
    fields: list[bytes] = []
    current: list[bytes] = []
    for piece in pieces:
        if len(current) == 7 or (len(piece) > room and (current or (head and not fields))):
            fields.append(bytes([0x90 | 2 * len(current)]) + b"".join(current))
            current, room = [], LISTPACK_VALUE - 1
        current.append(piece)
        room -= len(piece)
    if current or head:
        fields.append(bytes([0x90 | 2 * len(current)]) + b"".join(current))
    return fields


def _kept_cut(
    stored: Sequence[bytes], pieces: Sequence[bytes], head_room: int
) -> tuple[int, list[bytes], int] | None:
    """What of the stored cut stays: (members the head keeps, the chunks kept as stored,
    the first member cut anew), or None when the head's own members changed or no longer
    fit (the whole thread is cut anew)."""
    if not stored:
        return None
    counts = [len(unpack(octets(stored[0])[1:])[2]) // 2]
    counts += [len(unpack(octets(chunk))) // 2 for chunk in stored[1:]]
    old = [
        pack_member(received_at, unpack_id(email_id))
        for _, _, first in [unpack(octets(stored[0])[1:])]
        for received_at, email_id in zip(first[::2], first[1::2], strict=True)
    ]
    for chunk in stored[1:]:
        values = unpack(octets(chunk))
        old += [pack_member(values[i], unpack_id(values[i + 1])) for i in range(0, len(values), 2)]
    same = 0
    while same < min(len(old), len(pieces)) and old[same] == pieces[same]:
        same += 1
    # The part holding the first changed member (an append: the last part, which may have
    # room); every part when none changed.
    if same == len(old) == len(pieces):
        part = len(counts)
    elif same == len(old):
        part = len(counts) - 1
    else:
        part, seen = 0, counts[0]
        while seen <= same:
            part += 1
            seen += counts[part]
    in_head = counts[0]
    if part == 0 or (in_head and sum(map(len, pieces[:in_head])) > head_room):
        return None
    return in_head, [octets(c) for c in stored[1:part]], sum(counts[:part])


def decode_thread(parts: Sequence[bytes]) -> tuple[int, list[int], list[list[Any]]]:
    """(unread, [mailbox number, count, ...], [[receivedAt, email id], ...]) of a head and
    its chunks as the read script returns them."""
    unread, flat, first = unpack(octets(parts[0])[1:])
    values = list(first)
    for chunk in parts[1:]:
        values += unpack(octets(chunk))
    members = [[values[i], unpack_id(values[i + 1])] for i in range(0, len(values), 2)]
    return int(unread), list(flat), members


def decode_links(value: bytes) -> tuple[int, bytes]:
    """A links field's record count and subject digest."""
    count, _, rest = value.partition(b":")
    return int(count), rest[:SUBJECT_OCTETS]


# KEYS: the state hash, the meta hash, the mailbox numbers. ARGV: the data type, the bucket
# prefix, how many ids whose links are wanted, those ids, then the ids whose heads and chunks
# are wanted. Returns each thread's parts (nil without a head), each links id's first links
# field, the type's modseq, the epoch, the numbers' generation and the index's format
# (gateway.cache.format_fence: a layout of another release is not answered from), read at
# one instant. An id wanted both ways is one HMGET.
READ_THREADS = (
    THREAD_LUA
    + f"""
local FORMAT_FIELD = '{INDEX_FORMAT_FIELD}'
"""
    + """
local level, split = bucket_shape(KEYS[2], 'threads')
local nlinks = tonumber(ARGV[3])
local wanted = {}
for i = 4, 3 + nlinks do
  wanted[ARGV[i]] = i - 3
end
local found, links = {}, {}
for i = 1, nlinks do
  links[i] = false
end
for i = 4 + nlinks, #ARGV do
  local thread = ARGV[i]
  local bucket = thread_bucket(ARGV[2], thread, level, split)
  local head
  local at = wanted[thread]
  if at then
    local both = redis.call('HMGET', bucket, thread, 'r.' .. thread)
    head, links[at] = both[1], both[2]
    wanted[thread] = nil
  else
    head = redis.call('HGET', bucket, thread)
  end
  found[i - 3 - nlinks] = head and thread_chunks(bucket, thread, head) or false
end
for thread, at in pairs(wanted) do
  links[at] = redis.call('HGET', thread_bucket(ARGV[2], thread, level, split),
    'r.' .. thread) or false
end
return {found, links, redis.call('HGET', KEYS[1], ARGV[1]), redis.call('HGET', KEYS[2], 'epoch'),
  redis.call('HGET', KEYS[3], '*'), redis.call('HGET', KEYS[2], FORMAT_FIELD)}
"""
)


def is_head(field: bytes | str) -> bool:
    """Whether a thread table field is a head (its name the thread id)."""
    return "." not in (field.decode() if isinstance(field, bytes) else field)
