"""The octets of an account's held submissions, kept until they are sent or canceled.

RFC 8621 7.5: what is sent is the message as it was when the submission was created, so a held
submission keeps its prepared octets (Bcc already removed), not a reference to an Email that
may change or go; and its envelope beside them, since destroying the EmailSubmission record
"MUST NOT affect the deliveries it represents" (RFC 8621 7): the send needs no record.

They live under the account's hash tag, with a charge per account: a count and a total of
octets, checked and stored by one script, so replicas cannot overshoot together. Nothing here
expires by itself: the sender (or a cancel) drops them when the submission ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.cache.codec import octets as as_octets
from gateway.cache.codec import pack, text, unpack
from gateway.cache.keys import AccountKeys

# Per account: how many submissions may wait at once, and their octets together.
MAX_HELD_PER_ACCOUNT = 100
MAX_HELD_OCTETS_PER_ACCOUNT = 128 * 1024 * 1024

# KEYS: the octets' key, the charges hash (id -> octets, total under "*"). ARGV: id, octets,
# max count, max total. Returns "kept", "tooMany" or "tooLarge" (the total would pass the max).
_KEEP = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return 'kept'
end
local size = string.len(ARGV[2])
local total = tonumber(redis.call('HGET', KEYS[2], '*') or '0')
local count = redis.call('HLEN', KEYS[2]) - redis.call('HEXISTS', KEYS[2], '*')
if count >= tonumber(ARGV[3]) then
  return 'tooMany'
end
if total + size > tonumber(ARGV[4]) then
  return 'tooLarge'
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], size)
redis.call('HINCRBY', KEYS[2], '*', size)
return 'kept'
"""

# KEYS: the octets' key, the charges hash. ARGV: id. Returns 1 when something was dropped.
_DROP = """
local charged = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
if not charged then
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[2], '*', 0 - tonumber(charged))
if redis.call('HLEN', KEYS[2]) == 1 then
  redis.call('DEL', KEYS[2])
end
return 1
"""


@dataclass(frozen=True)
class HeldMessage:
    """What a held submission sends: its envelope (plain data, the sender's to interpret) and
    the message's octets as prepared at creation."""

    envelope: dict[str, Any]
    octets: bytes


KeepResult = Literal["kept", "tooMany", "tooLarge"]
_KEEP_RESULTS: dict[str, KeepResult] = {
    "kept": "kept",
    "tooMany": "tooMany",
    "tooLarge": "tooLarge",
}


class HeldMessages:
    """One account's held octets, by submission id."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        account_id: str,
        *,
        max_count: int = MAX_HELD_PER_ACCOUNT,
        max_octets: int = MAX_HELD_OCTETS_PER_ACCOUNT,
    ) -> None:
        self._client = client
        self._keys = AccountKeys(account_id)
        self.max_count = max_count
        self.max_octets = max_octets
        self._keep = client.register_script(_KEEP)
        self._drop = client.register_script(_DROP)

    async def keep(self, submission_id: str, message: HeldMessage) -> KeepResult:
        """Store the message unless the account's held count or total would pass its bound."""
        value = pack([message.envelope, message.octets])
        result = await self._keep(
            keys=[self._keys.held(submission_id), self._keys.held_charges],
            args=[submission_id, value, self.max_count, self.max_octets],
        )
        return _KEEP_RESULTS[text(result)]

    async def read(self, submission_id: str) -> HeldMessage | None:
        value = await self._client.get(self._keys.held(submission_id))
        if value is None:
            return None
        envelope, octets = unpack(as_octets(value))
        return HeldMessage(envelope, octets)

    async def drop(self, submission_id: str) -> bool:
        """Forget the octets and their charge (sent, failed or canceled)."""
        dropped = await self._drop(
            keys=[self._keys.held(submission_id), self._keys.held_charges],
            args=[submission_id],
        )
        return bool(dropped)
