"""Per-account mailbox numbers: the small integers email records name folders by.

A Dovecot mailbox id is 33 characters; an email record naming it once per copy would not fit
the 64 octets Redis keeps in a compact listpack (gateway.cache.record_buckets). So every
mailbox id the records name gets a number in ``mailbox-numbers`` (field id -> number),
assigned in a script (atomic: two writers never give one number two ids) and never reused
or changed while the table lives: the table is append-only, so a copy cached in the process
never goes wrong.

The table can still be recreated (an index format reset removes it with the records, or
Redis was flushed): it then carries a new generation token (field ``*``), which every read
of records returns with them and every record write checks inside its script. A cached table
of another generation is never used, to decode or to encode.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.cache.codec import text
from gateway.cache.keys import INDEX_FORMAT_FIELD, AccountKeys
from gateway.cache.locks import LeaseLost
from gateway.cache.record_buckets import RECORDS, shape_fields

# The table's own fields (JMAP ids are [A-Za-z0-9_-], so no mailbox id is either).
GENERATION_FIELD = "*"
LAST_FIELD = "+"
# Accounts whose tables one process keeps (least recently used go first); a table is a few
# hundred small entries.
CACHED_ACCOUNTS = 4096
# The meta field counting the account's records.
RECORDS_COUNT = shape_fields(RECORDS)[2]

# KEYS[1] the numbers hash, KEYS[2] the account's meta. ARGV[1] a generation candidate,
# ARGV[2] the records' count field, ARGV[3] the index format field, then mailbox ids. Returns
# the table's generation, then each id's number (a new one where it had none); nil, and the
# index marked for a format reset, when the table is gone while records remain: a new table
# would number the folders anew, and the records would read as other folders' copies.
_ASSIGN = """
local records = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
if records > 0 and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HDEL', KEYS[2], ARGV[3])
  return false
end
redis.call('HSETNX', KEYS[1], '*', ARGV[1])
local out = {redis.call('HGET', KEYS[1], '*')}
for i = 4, #ARGV do
  local n = redis.call('HGET', KEYS[1], ARGV[i])
  if not n then
    n = redis.call('HINCRBY', KEYS[1], '+', 1)
    redis.call('HSET', KEYS[1], ARGV[i], n)
  end
  out[i - 2] = tonumber(n)
end
return out
"""


class StaleNumbers(LeaseLost):
    """The mailbox numbers changed generation while records were read or written: the
    index was made anew under this work (a reset, a flushed Redis), which is handled as a
    lease lost mid-work (a request gets serverUnavailable, a catch-up starts again)."""


class UnknownNumber(StaleNumbers):
    """Records the table cannot name folders for (a number it lacks, or no table at all):
    the index is damaged (keys evicted or deleted). It is marked for a format reset, which
    the next catch-up makes (gateway.cache.index_format) and rebuilds it from the upstream;
    until then requests get serverUnavailable, never a record under another folder."""


@dataclass(slots=True)
class Numbering:
    """One generation of an account's table, as far as this process has read it."""

    generation: str
    by_id: dict[str, int] = field(default_factory=dict)
    by_number: dict[int, str] = field(default_factory=dict)

    def add(self, mailbox_id: str, number: int) -> None:
        self.by_id[mailbox_id] = number
        self.by_number[number] = mailbox_id


_cache: OrderedDict[str, Numbering] = OrderedDict()


class MailboxNumbers:
    """One account's mailbox numbering: reads through the process's cache."""

    def __init__(self, client: Redis | RedisCluster, keys: AccountKeys) -> None:
        self.client = client
        self.keys = keys

    def cached(self) -> Numbering | None:
        found = _cache.get(self.keys.account_id)
        if found is not None:
            _cache.move_to_end(self.keys.account_id)
        return found

    def forget(self) -> None:
        _cache.pop(self.keys.account_id, None)

    def _keep(self, numbering: Numbering) -> Numbering:
        _cache[self.keys.account_id] = numbering
        _cache.move_to_end(self.keys.account_id)
        while len(_cache) > CACHED_ACCOUNTS:
            _cache.popitem(last=False)
        return numbering

    async def assign(self, mailbox_ids: Iterable[str]) -> Numbering:
        """A table numbering every one of ``mailbox_ids`` (and creating the table if it is
        missing); a round trip only when one of them is new to this process."""
        wanted = list(dict.fromkeys(mailbox_ids))
        known = self.cached()
        if known is not None and all(m in known.by_id for m in wanted):
            return known
        reply = await self.client.register_script(_ASSIGN)(
            keys=[self.keys.mailbox_numbers, self.keys.meta],
            args=[secrets.token_hex(8), RECORDS_COUNT, INDEX_FORMAT_FIELD, *wanted],
        )
        if reply is None:
            raise UnknownNumber(self.keys.mailbox_numbers)
        generation = text(reply[0])
        numbering = known if known is not None and known.generation == generation else None
        if numbering is None:
            numbering = Numbering(generation)
        for mailbox_id, number in zip(wanted, reply[1:], strict=True):
            numbering.add(mailbox_id, int(number))
        return self._keep(numbering)

    async def table(self, generation: str | None) -> Numbering:
        """The table of ``generation``: the cached one, else read again. StaleNumbers if
        the table in Redis is no longer of that generation (the caller reads the records
        again)."""
        known = self.cached()
        if known is not None and known.generation == generation:
            return known
        return await self.reload(generation)

    async def reload(self, generation: str | None) -> Numbering:
        """The table read again (a record named a number newer than the cached copy)."""
        raw = await self.client.hgetall(self.keys.mailbox_numbers)
        table = {text(k): text(v) for k, v in raw.items()}
        if generation is None or table.get(GENERATION_FIELD) != generation:
            raise StaleNumbers(self.keys.mailbox_numbers)
        numbering = Numbering(generation)
        for mailbox_id, number in table.items():
            if mailbox_id not in (GENERATION_FIELD, LAST_FIELD):
                numbering.add(mailbox_id, int(number))
        return self._keep(numbering)
