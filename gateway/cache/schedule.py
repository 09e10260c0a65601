"""The durable schedule of held submissions (RFC 8621 7, delayed send), shared by every replica.

One sorted set holds every held submission of every account, scored by the time (ms, Redis's
clock) at which something must happen to it: its release while it waits, the end of its lease
while a replica sends it. A replica's sender task therefore asks one key what is due next
instead of visiting accounts, and a lease that ran out is simply due again: the next claim
takes it over. Beside it a hash holds each entry's state as JSON: the user name the send
authenticates for (never a password: the send uses the operator's background authorization),
the lease holder's token, the attempts made, whether the final "." may have been written,
whether the user canceled it, and whether its creation completed.

Both keys share the hash tag ``{schedule}``, so every script below touches one slot: on a
Redis Cluster the whole schedule lives on one node. That is fine for a schedule (a few small
entries per held message; the octets live under the account's own tag, see
:mod:`gateway.cache.held`), and it is what makes a claim atomic across replicas.

The rules the scripts keep:

- a claim moves one due entry to "sending" with a fresh token, so exactly one replica holds it;
- only the token's holder renews, marks, reschedules or finishes it (a holder whose lease was
  taken over learns so and must stop);
- before the final "." the holder marks the entry (``mark_data``); a later holder that finds the
  mark never sends again, since the message may have gone (RFC 5321 4.1.1.4 and RFC 1047);
  a definite 4xx reply to the "." says it did not, and ``retry`` clears the mark;
- a cancel succeeds only while nobody holds the entry and no "." was ever on its way.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.cache.codec import text
from gateway.cache.keys import PREFIX

# A new entry waits this long before it can be claimed unless `release_at` confirms it: if the
# process creating the submission dies half way, the entry is found then and cleaned up.
TENTATIVE_SECONDS = 300.0
# A canceled entry whose cleanup did not finish (the canceling process died) is looked at again
# after this long by whichever sender task claims it.
CANCEL_SWEEP_SECONDS = 30.0

# Every script starts here: Redis's clock in ms (one clock for all replicas), the entry codec.
_PRELUDE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function int(n)
  return string.format('%d', n)
end
local function load(member)
  local raw = redis.call('HGET', KEYS[2], member)
  if not raw then
    return nil
  end
  return cjson.decode(raw)
end
local function save(member, entry)
  redis.call('HSET', KEYS[2], member, cjson.encode(entry))
end
"""

# ARGV: member, user name, tentative delay (ms). Returns 1 when added, 0 when it existed.
_ADD = (
    _PRELUDE
    + """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return 0
end
save(ARGV[1], {u = ARGV[2], t = '', a = 0, d = 0, c = 0, r = 0})
redis.call('ZADD', KEYS[1], int(now + tonumber(ARGV[3])), ARGV[1])
return 1
"""
)

# ARGV: member, release time (ms). Only an entry nobody holds moves; it is confirmed (its
# creation completed). Returns 1 when moved.
_RELEASE_AT = (
    _PRELUDE
    + """
local entry = load(ARGV[1])
if not entry or entry.t ~= '' or entry.c == 1 then
  return 0
end
entry.r = 1
save(ARGV[1], entry)
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""
)

# ARGV: token, lease (ms). Returns {member, entry as it was} or false when nothing is due.
_CLAIM = (
    _PRELUDE
    + """
while true do
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'LIMIT', 0, 1)
  if #due == 0 then
    return false
  end
  local member = due[1]
  local raw = redis.call('HGET', KEYS[2], member)
  if raw then
    local entry = cjson.decode(raw)
    entry.t = ARGV[1]
    save(member, entry)
    redis.call('ZADD', KEYS[1], int(now + tonumber(ARGV[2])), member)
    return {member, raw}
  end
  redis.call('ZREM', KEYS[1], member)
end
"""
)

# ARGV: member, token, then the operation and its argument:
#   renew <lease ms>, data <lease ms> (the "." may follow), retry <delay ms> (a definite
#   transient failure: the server did not take the message, so the "." mark is cleared),
#   release <delay ms> (given back unsent, no attempt counted; the mark stays), finish -.
# Returns 1 when the token still held the entry (and the operation was done), else 0.
_HOLDER = (
    _PRELUDE
    + """
local entry = load(ARGV[1])
if not entry or entry.t ~= ARGV[2] then
  return 0
end
local op, arg = ARGV[3], ARGV[4]
if op == 'finish' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
if op == 'data' then
  entry.d = 1
elseif op == 'retry' then
  entry.t = ''
  entry.a = entry.a + 1
  entry.d = 0
elseif op == 'release' then
  entry.t = ''
end
save(ARGV[1], entry)
redis.call('ZADD', KEYS[1], int(now + tonumber(arg)), ARGV[1])
return 1
"""
)

# ARGV: member, sweep delay (ms). Returns "canceled", "claimed" (held now, or a "." may have
# gone) or "missing".
_CANCEL = (
    _PRELUDE
    + """
local entry = load(ARGV[1])
if not entry then
  return 'missing'
end
if entry.c == 1 then
  return 'canceled'
end
if entry.t ~= '' or entry.d == 1 then
  return 'claimed'
end
entry.c = 1
save(ARGV[1], entry)
redis.call('ZADD', KEYS[1], int(now + tonumber(ARGV[2])), ARGV[1])
return 'canceled'
"""
)

# ARGV: member, "canceled" or "unconfirmed". Drops a canceled entry (the cancel's cleanup is
# done), or an unconfirmed one nobody holds (its creation failed). Returns 1 when dropped.
_FORGET = (
    _PRELUDE
    + """
local entry = load(ARGV[1])
if not entry then
  return 0
end
if ARGV[2] == 'canceled' and entry.c ~= 1 then
  return 0
end
if ARGV[2] == 'unconfirmed' and (entry.r == 1 or entry.t ~= '') then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""
)

CancelResult = Literal["canceled", "claimed", "missing"]
_CANCEL_RESULTS: dict[str, CancelResult] = {
    "canceled": "canceled",
    "claimed": "claimed",
    "missing": "missing",
}


@dataclass(frozen=True)
class Held:
    """One schedule entry as a claim found it."""

    account_id: str
    submission_id: str
    username: str
    # Attempts that ended in a transient failure before this one.
    attempts: int
    # A holder marked that the final "." may have been written: never send again.
    data_started: bool
    # The user canceled it; what is left is the cleanup.
    canceled: bool
    # Its creation completed (release_at was called): unconfirmed after TENTATIVE_SECONDS
    # means the creating process died half way, and the client was never told of it.
    confirmed: bool


@dataclass(frozen=True)
class Claim:
    """An entry this replica holds until it finishes, reschedules or loses it."""

    held: Held
    token: str


def _member(account_id: str, submission_id: str) -> str:
    return f"{account_id}/{submission_id}"


def _held(member: str, entry: dict[str, Any]) -> Held:
    account_id, _, submission_id = member.partition("/")
    return Held(
        account_id=account_id,
        submission_id=submission_id,
        username=str(entry["u"]),
        attempts=int(entry["a"]),
        data_started=entry["d"] == 1,
        canceled=entry["c"] == 1,
        confirmed=entry["r"] == 1,
    )


class Schedule:
    """The schedule of every account's held submissions; one per process, shared by tasks.

    ``name`` keeps schedules apart (tests); ``lease_seconds`` is how long a claim lasts
    without renewal, so how long a dead replica's send waits before another takes it over.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        name: str = "schedule",
        lease_seconds: float = 60.0,
        sweep_seconds: float = CANCEL_SWEEP_SECONDS,
        tentative_seconds: float = TENTATIVE_SECONDS,
    ) -> None:
        base = f"{PREFIX}:{{{name}}}"
        self._keys = [f"{base}:due", f"{base}:entries"]
        self._client = client
        self.lease_seconds = lease_seconds
        self._sweep_ms = int(sweep_seconds * 1000)
        self._tentative_ms = int(tentative_seconds * 1000)
        self._add = client.register_script(_ADD)
        self._release_at = client.register_script(_RELEASE_AT)
        self._claim = client.register_script(_CLAIM)
        self._holder = client.register_script(_HOLDER)
        self._cancel = client.register_script(_CANCEL)
        self._forget = client.register_script(_FORGET)

    @property
    def _lease_ms(self) -> int:
        return int(self.lease_seconds * 1000)

    async def add(self, account_id: str, submission_id: str, username: str) -> bool:
        """Enter a submission, tentatively: it becomes due at :meth:`release_at`'s time, or
        after TENTATIVE_SECONDS if its creator never confirms (and the sender then finds no
        record and drops it). False if it was entered already."""
        added = await self._add(
            keys=self._keys,
            args=[_member(account_id, submission_id), username, self._tentative_ms],
        )
        return bool(added)

    async def release_at(self, account_id: str, submission_id: str, when_ms: int) -> bool:
        """Set when the entry is due (ms since the epoch); False if it is held or gone."""
        moved = await self._release_at(
            keys=self._keys, args=[_member(account_id, submission_id), when_ms]
        )
        return bool(moved)

    async def next_due(self) -> float | None:
        """Seconds (by Redis's clock) until the first entry is due, 0 if one is; None: empty."""
        first = await self._client.zrange(self._keys[0], 0, 0, withscores=True)
        if not first:
            return None
        seconds, micros = await self._client.time()
        now_ms = seconds * 1000 + micros // 1000
        return max(0.0, (float(first[0][1]) - now_ms) / 1000)

    async def claim(self) -> Claim | None:
        """Take the first due entry for this replica, or None when nothing is due."""
        token = secrets.token_hex(8)
        found = await self._claim(keys=self._keys, args=[token, self._lease_ms])
        if not found:
            return None
        member, raw = text(found[0]), text(found[1])
        entry = json.loads(raw)
        return Claim(_held(member, entry), token)

    async def _as_holder(self, claim: Claim, op: str, arg: int | str) -> bool:
        member = _member(claim.held.account_id, claim.held.submission_id)
        done = await self._holder(keys=self._keys, args=[member, claim.token, op, arg])
        return bool(done)

    async def renew(self, claim: Claim) -> bool:
        """Extend the lease a full term; False if it is no longer ours (stop sending)."""
        return await self._as_holder(claim, "renew", self._lease_ms)

    async def mark_data(self, claim: Claim) -> bool:
        """Record, before the final ".", that the message may now be sent, and renew; False if
        the lease is no longer ours, and then the "." must not be written."""
        return await self._as_holder(claim, "data", self._lease_ms)

    async def retry(self, claim: Claim, delay_seconds: float) -> bool:
        """Give the entry back to be tried again after ``delay_seconds``; the attempt is
        counted. Only for a failure that says nothing was taken (a 4xx reply, even to the final
        ".", or a connection lost before the "."): it clears the "." mark, which otherwise
        would make the next holder record the delivery unknown and never send it."""
        return await self._as_holder(claim, "retry", int(delay_seconds * 1000))

    async def release(self, claim: Claim) -> bool:
        """Give the entry back unsent, due at once, without counting an attempt (this replica
        is stopping)."""
        return await self._as_holder(claim, "release", 0)

    async def finish(self, claim: Claim) -> bool:
        """Remove the entry: the submission reached its end (sent, failed, canceled)."""
        return await self._as_holder(claim, "finish", "-")

    async def cancel(self, account_id: str, submission_id: str) -> CancelResult:
        """Mark the entry canceled unless a replica holds it or a "." may have gone.

        "canceled": it will never be sent; the caller finishes the cleanup and calls
        :meth:`forget` (or, if it dies first, a sender task does after CANCEL_SWEEP_SECONDS).
        """
        result = await self._cancel(
            keys=self._keys,
            args=[_member(account_id, submission_id), self._sweep_ms],
        )
        return _CANCEL_RESULTS[text(result)]

    async def forget(self, account_id: str, submission_id: str) -> bool:
        """Drop a canceled entry once its cleanup is done."""
        return await self._drop(account_id, submission_id, "canceled")

    async def withdraw(self, account_id: str, submission_id: str) -> bool:
        """Drop an entry whose creation failed before :meth:`release_at` confirmed it."""
        return await self._drop(account_id, submission_id, "unconfirmed")

    async def _drop(self, account_id: str, submission_id: str, kind: str) -> bool:
        member = _member(account_id, submission_id)
        return bool(await self._forget(keys=self._keys, args=[member, kind]))
