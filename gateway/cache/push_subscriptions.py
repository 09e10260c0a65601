"""Push subscriptions (RFC 8620 7.2) as Redis keeps them: every piece of their state.

Per account, under its hash tag (one slot, so each account's step is one script):

==================================  ======  =============================================
``jg:{a}:push-subscriptions``       hash    subscription id -> msgpack :class:`Subscription`
``jg:{a}:push-pending``             hash    subscription id -> msgpack of what waits to be
                                            pushed: ``verify`` (a PushVerification) and/or
                                            ``changed`` (type -> state), ``attempts``,
                                            ``notBefore`` (ms)
``jg:{a}:push-sent``                hash    subscription id -> when a push last went (ms)
``jg:{a}:push-login``               string  the user name the owner logs in with (never a
                                            password), for background watching; only a
                                            non-empty name replaces it, and it goes with
                                            the account's last subscription
==================================  ======  =============================================

Server-wide (each its own slot):

- ``jg:push-due`` zset: ``"<accountId> <subscriptionId>"`` -> epoch ms at which a delivery is
  due; a claim re-scores it to the end of its lease, so a replica dying mid-delivery lets it
  come due again (delivered at least once).
- ``jg:push-subscribed`` zset: accountId -> the latest ``expires`` (s) of its verified
  subscriptions, for background watching. It is written after the account's step, then the
  account is read again and the score raised if needed: concurrent writers leave it at or
  above the truth (a watcher a little too long), never below it.
- ``jg:push-expiry`` zset: accountId -> the earliest ``expires`` (s) of its subscriptions,
  verified or not, so :meth:`PushSubscriptions.sweep_expired` erases expired subscriptions of
  accounts whose owner never calls again (Redis runs without eviction and no key has a TTL).
  Each write sets the score its account step saw, then reads the account again and lowers it
  if needed: it stays at or below the truth (a sweep that finds nothing to erase yet and
  re-scores the account), never above it.

A step across the account's slot and a server-wide key cannot be one script on a cluster, so
each write does the account's part first and the server-wide part after, in an order where a
crash between them delays a push at worst, never drops the pending state itself:
:meth:`PushSubscriptions.get_all` re-schedules a pending delivery that has no due entry, and
the account's next change schedules it too.
"""

from __future__ import annotations

import secrets
import time
import weakref
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.cache.codec import octets, pack, text, unpack
from gateway.cache.keys import PREFIX, AccountKeys
from gateway.cache.store import Store

DUE = f"{PREFIX}:push-due"
SUBSCRIBED = f"{PREFIX}:push-subscribed"
EXPIRY = f"{PREFIX}:push-expiry"

# RFC 8620 7.2: the code "MUST contain sufficient entropy to avoid the client being able to
# guess the code via brute force": 128 bits.
VERIFICATION_OCTETS = 16
# A compare-and-set update retried this often against concurrent writers of one record.
_UPDATE_TRIES = 8


class Subscription(TypedDict):
    """One PushSubscription as stored. ``expires`` and ``created`` are epoch seconds."""

    deviceClientId: str
    url: str
    keys: dict[str, str] | None
    verificationCode: str
    verified: bool
    expires: int
    types: list[str] | None
    created: int


class Pending(TypedDict):
    """What waits to be pushed to one subscription."""

    verify: NotRequired[bool]
    changed: NotRequired[dict[str, str]]
    attempts: NotRequired[int]
    notBefore: NotRequired[int]


class TooManySubscriptions(Exception):
    """The account already holds as many subscriptions as allowed."""


class UnknownSubscription(LookupError):
    """No subscription of that id in the account."""


def subscriptions_key(account_id: str) -> str:
    return f"{AccountKeys(account_id).base}:push-subscriptions"


def pending_key(account_id: str) -> str:
    return f"{AccountKeys(account_id).base}:push-pending"


def sent_key(account_id: str) -> str:
    return f"{AccountKeys(account_id).base}:push-sent"


def login_key(account_id: str) -> str:
    return f"{AccountKeys(account_id).base}:push-login"


def due_member(account_id: str, subscription_id: str) -> str:
    return f"{account_id} {subscription_id}"


def new_subscription_id() -> str:
    """A JMAP Id (RFC 8620 1.2: URL-safe base64 characters), unguessable."""
    return "P" + secrets.token_urlsafe(15)


def new_verification_code() -> str:
    return secrets.token_hex(VERIFICATION_OCTETS)


def is_live(record: Subscription, now_s: float) -> bool:
    """RFC 8620 7.2: "the JMAP server MUST NOT make further requests to this resource after
    this time" (``expires``)."""
    return record["expires"] > now_s


# Shared by the account scripts. KEYS[1] the subscriptions hash, KEYS[2] pending, KEYS[3] sent,
# KEYS[4] the push login.
# ``newer`` is gateway.push.states.newer's rule: modseqs compared as digit strings (19 digits do
# not fit a Lua number exactly); an unparsable state is newer when it differs.
_PRELUDE = """
local function modseq_ok(m)
  return m == '0' or (#m <= 19 and string.sub(m, 1, 1) ~= '0')
end
local function newer(a, b)
  local ea, ma = string.match(a, '^(.+)%-(%d+)$')
  local eb, mb = string.match(b, '^(.+)%-(%d+)$')
  if not ea or not eb or not modseq_ok(ma) or not modseq_ok(mb) then
    return a ~= b
  end
  if ea ~= eb then
    return true
  end
  if #ma ~= #mb then
    return #mb > #ma
  end
  return mb > ma
end
local function live(rec, now_s)
  return tonumber(rec.expires) > now_s
end
-- Erase the expired subscriptions; returns their ids.
local function purge(now_s)
  local gone = {}
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if not live(cmsgpack.unpack(all[i + 1]), now_s) then
      gone[#gone + 1] = all[i]
    end
  end
  for _, id in ipairs(gone) do
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
  end
  if #gone > 0 and redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[4])
  end
  return gone
end
-- The earliest expiry (s) among all the subscriptions, verified or not, 0 when none.
local function earliest()
  local best = 0
  for _, raw in ipairs(redis.call('HVALS', KEYS[1])) do
    local e = tonumber(cmsgpack.unpack(raw).expires)
    if best == 0 or e < best then
      best = e
    end
  end
  return best
end
-- The latest expiry (s) among the verified live subscriptions, 0 when none.
local function latest(now_s)
  local best = 0
  local all = redis.call('HVALS', KEYS[1])
  for _, raw in ipairs(all) do
    local rec = cmsgpack.unpack(raw)
    if rec.verified == true and live(rec, now_s) and tonumber(rec.expires) > best then
      best = tonumber(rec.expires)
    end
  end
  return best
end
local function int(n)
  return string.format('%d', n)
end
"""

# KEYS: subscriptions, pending, sent, login. ARGV: id, record, pending, login ('': keep),
# now_s, limit. Returns {1 | 0 (over the limit), latest, earliest, purged ids...}.
_CREATE = (
    _PRELUDE
    + """
local now_s = tonumber(ARGV[5])
local gone = purge(now_s)
local limit = tonumber(ARGV[6])
local made = 0
if limit <= 0 or redis.call('HLEN', KEYS[1]) < limit then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  redis.call('HDEL', KEYS[3], ARGV[1])
  if ARGV[4] ~= '' then
    redis.call('SET', KEYS[4], ARGV[4])
  end
  made = 1
end
local out = {made, latest(now_s), earliest()}
for _, id in ipairs(gone) do
  out[#out + 1] = id
end
return out
"""
)

# KEYS: subscriptions, pending, sent, login. ARGV: now_s.
# Returns {latest, earliest, {id, record, ...}, {purged ids}, {ids with something pending}}.
_GET_ALL = (
    _PRELUDE
    + """
local now_s = tonumber(ARGV[1])
local gone = purge(now_s)
return {
  latest(now_s), earliest(), redis.call('HGETALL', KEYS[1]), gone, redis.call('HKEYS', KEYS[2])
}
"""
)

# KEYS: subscriptions, pending, sent, login. ARGV: now_s. Returns {latest, earliest, purged
# ids...}.
_SWEEP = (
    _PRELUDE
    + """
local now_s = tonumber(ARGV[1])
local gone = purge(now_s)
local out = {latest(now_s), earliest()}
for _, id in ipairs(gone) do
  out[#out + 1] = id
end
return out
"""
)

# KEYS: subscriptions, pending, sent, login. ARGV: id, old record, new record, login ('':
# keep), drop_verify (1/0), now_s. Returns {1 | 0 (gone) | -1 (changed meanwhile), latest,
# 1 when dropping the verification left nothing pending, earliest}.
_UPDATE = (
    _PRELUDE
    + """
local now_s = tonumber(ARGV[6])
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then
  return {0, latest(now_s), 0, earliest()}
end
if current ~= ARGV[2] then
  return {-1, 0, 0, 0}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local emptied = 0
if ARGV[5] == '1' then
  local raw = redis.call('HGET', KEYS[2], ARGV[1])
  if raw then
    local p = cmsgpack.unpack(raw)
    p.verify = nil
    if p.changed == nil then
      redis.call('HDEL', KEYS[2], ARGV[1])
      emptied = 1
    else
      redis.call('HSET', KEYS[2], ARGV[1], cmsgpack.pack(p))
    end
  end
end
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[4], ARGV[4])
end
return {1, latest(now_s), emptied, earliest()}
"""
)

# KEYS: subscriptions, pending, sent, login. ARGV: id, now_s. Returns {existed, latest,
# earliest}.
_DESTROY = (
    _PRELUDE
    + """
local existed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[4])
end
return {existed, latest(tonumber(ARGV[2])), earliest()}
"""
)

# KEYS: subscriptions, pending, sent, login. ARGV: now_s. Returns {latest, earliest}.
_LATEST = (
    _PRELUDE
    + """
return {latest(tonumber(ARGV[1])), earliest()}
"""
)

# KEYS: subscriptions, pending, sent, login. ARGV: now_ms, delay_ms, min_interval_ms, states
# (msgpack).
# Merges the states into the pending entry of every verified live subscription whose types
# want any of them; returns {id, due_ms, ...} of those.
_ENQUEUE = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {}
end
local now = tonumber(ARGV[1])
local delay = tonumber(ARGV[2])
local gap = tonumber(ARGV[3])
local states = cmsgpack.unpack(ARGV[4])
local out = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local id = all[i]
  local rec = cmsgpack.unpack(all[i + 1])
  if rec.verified == true and live(rec, now / 1000) then
    local picked = {}
    local any = false
    if type(rec.types) == 'table' then
      for _, t in ipairs(rec.types) do
        if states[t] then
          picked[t] = states[t]
          any = true
        end
      end
    else
      for t, s in pairs(states) do
        picked[t] = s
        any = true
      end
    end
    if any then
      local raw = redis.call('HGET', KEYS[2], id)
      local p = {}
      if raw then
        p = cmsgpack.unpack(raw)
      end
      if type(p.changed) ~= 'table' then
        p.changed = {}
      end
      for t, s in pairs(picked) do
        local old = p.changed[t]
        if not old or newer(old, s) then
          p.changed[t] = s
        end
      end
      redis.call('HSET', KEYS[2], id, cmsgpack.pack(p))
      local last = tonumber(redis.call('HGET', KEYS[3], id) or '0')
      out[#out + 1] = id
      out[#out + 1] = int(math.max(now + delay, last + gap))
    end
  end
end
return out
"""
)

# KEYS: subscriptions, pending, sent, login. ARGV: id, what was sent (msgpack), now_ms,
# record_sent (1: a state change went, so it starts the per-subscription interval). Removes
# from the pending entry what was sent and is still the same (a state merged since stays),
# resets its attempts; returns 1 when something remains pending.
_DELIVERED = (
    _PRELUDE
    + """
local id = ARGV[1]
-- A subscription destroyed while its push was on its way leaves nothing behind.
if ARGV[4] == '1' and redis.call('HEXISTS', KEYS[1], id) == 1 then
  redis.call('HSET', KEYS[3], id, ARGV[3])
end
local raw = redis.call('HGET', KEYS[2], id)
if not raw then
  return 0
end
local p = cmsgpack.unpack(raw)
local s = cmsgpack.unpack(ARGV[2])
if s.verify == true then
  p.verify = nil
end
if type(s.changed) == 'table' and type(p.changed) == 'table' then
  for t, v in pairs(s.changed) do
    if p.changed[t] == v then
      p.changed[t] = nil
    end
  end
  if next(p.changed) == nil then
    p.changed = nil
  end
end
if p.verify == nil and p.changed == nil then
  redis.call('HDEL', KEYS[2], id)
  return 0
end
p.attempts = 0
p.notBefore = nil
redis.call('HSET', KEYS[2], id, cmsgpack.pack(p))
return 1
"""
)

# KEYS: subscriptions, pending, sent, login. ARGV: id, due_ms, attempts. Returns 1 when pending.
_RETRY = (
    _PRELUDE
    + """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then
  return 0
end
local p = cmsgpack.unpack(raw)
p.attempts = tonumber(ARGV[3])
p.notBefore = tonumber(ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], cmsgpack.pack(p))
return 1
"""
)

# KEYS: the due zset. ARGV: now_ms, limit, lease_ms. The due members, re-scored to the lease.
_CLAIM = """
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
local until_ms = string.format('%d', now + tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', until_ms, member)
end
return due
"""


def encode(record: Subscription) -> bytes:
    return pack(dict(record))


def decode(data: bytes | str) -> Subscription:
    return cast(Subscription, unpack(octets(data)))


def decode_pending(data: bytes | str) -> Pending:
    return cast(Pending, unpack(octets(data)))


def _now_s() -> int:
    return int(time.time())


class PushSubscriptions:
    """Reads and writes every account's push subscriptions and their deliveries."""

    @classmethod
    def of(cls, store: Store) -> PushSubscriptions:
        """The one instance of ``store`` (its scripts registered once per process)."""
        found = _INSTANCES.get(store)
        if found is None:
            found = _INSTANCES[store] = cls(store.client)
        return found

    def __init__(self, client: Redis | RedisCluster) -> None:
        self._client = client
        # EVALSHA after the first call of each: the script text is sent once.
        self._create = client.register_script(_CREATE)
        self._get_all = client.register_script(_GET_ALL)
        self._sweep = client.register_script(_SWEEP)
        self._update = client.register_script(_UPDATE)
        self._destroy = client.register_script(_DESTROY)
        self._latest = client.register_script(_LATEST)
        self._enqueue = client.register_script(_ENQUEUE)
        self._delivered = client.register_script(_DELIVERED)
        self._retry = client.register_script(_RETRY)
        self._claim = client.register_script(_CLAIM)

    @staticmethod
    def _keys(account_id: str) -> list[str]:
        return [
            subscriptions_key(account_id),
            pending_key(account_id),
            sent_key(account_id),
            login_key(account_id),
        ]

    async def create(
        self,
        account_id: str,
        record: Subscription,
        *,
        login: str,
        max_per_account: int = 0,
        now_ms: int | None = None,
    ) -> str:
        """Store a new subscription and its PushVerification (RFC 8620 7.2: "the server MUST
        immediately push a PushVerification object"), due at once; returns its id.

        Raises TooManySubscriptions when the account already has ``max_per_account`` (0: no
        bound). Expired subscriptions are erased first and do not count. An empty ``login``
        (a bearer token naming nobody) leaves the stored one alone."""
        if not record.get("verificationCode"):
            raise ValueError("a subscription is created with its verification code")
        subscription_id = new_subscription_id()
        now_ms = _now_ms() if now_ms is None else now_ms
        pending: Pending = {"verify": True, "attempts": 0}
        reply = await self._create(
            keys=self._keys(account_id),
            args=[
                subscription_id,
                encode(record),
                pack(dict(pending)),
                login,
                now_ms // 1000,
                max_per_account,
            ],
        )
        made, latest, earliest, *purged = reply
        if int(made):
            await self._client.zadd(DUE, {due_member(account_id, subscription_id): now_ms})
        if purged:
            await self._forget_due(account_id, [text(p) for p in purged])
        if purged or int(made):
            await self._publish(account_id, int(latest), int(earliest))
        if not int(made):
            raise TooManySubscriptions(f"an account keeps at most {max_per_account}")
        return subscription_id

    async def get_all(self, account_id: str) -> dict[str, Subscription]:
        """The account's live subscriptions; expired ones are erased on the way (RFC 8620 7.2:
        the server "MAY automatically destroy the push subscription at or after this time")."""
        now_ms = _now_ms()
        latest, earliest, flat, purged, pending = await self._get_all(
            keys=self._keys(account_id), args=[now_ms // 1000]
        )
        records = {text(flat[i]): decode(flat[i + 1]) for i in range(0, len(flat), 2)}
        if purged:
            await self._forget_due(account_id, [text(p) for p in purged])
            await self._publish(account_id, int(latest), int(earliest))
        if pending:
            await self._heal(account_id, [text(p) for p in pending], now_ms)
        return records

    async def update(
        self,
        account_id: str,
        subscription_id: str,
        changes: Mapping[str, Any],
        *,
        login: str | None = None,
    ) -> Subscription:
        """The record with ``changes`` applied, stored; ``login`` (when given and not empty: a
        bearer token naming nobody must not turn off the devices' background watching) becomes
        the account's push login. Verifying drops a PushVerification still pending: the client
        has the code already. Raises UnknownSubscription."""
        keys = self._keys(account_id)
        for _ in range(_UPDATE_TRIES):
            raw = await self._client.hget(keys[0], subscription_id)
            if raw is None:
                raise UnknownSubscription(subscription_id)
            old = decode(raw)
            new = cast(Subscription, {**old, **changes})
            drop_verify = bool(new["verified"]) and not old["verified"]
            done, latest, emptied, earliest = await self._update(
                keys=keys,
                args=[
                    subscription_id,
                    octets(raw),
                    encode(new),
                    login or "",
                    int(drop_verify),
                    _now_s(),
                ],
            )
            if int(done) == 0:
                raise UnknownSubscription(subscription_id)
            if int(done) == 1:
                if int(emptied):
                    await self._undue(account_id, subscription_id, _now_ms())
                await self._publish(account_id, int(latest), int(earliest))
                return new
        raise RuntimeError(f"push subscription {subscription_id} kept changing under an update")

    async def verified(self, account_id: str, subscription_id: str) -> Subscription:
        """The client echoed the verification code: pushes may go (RFC 8620 7.2)."""
        return await self.update(account_id, subscription_id, {"verified": True})

    async def destroy(self, account_id: str, subscription_id: str) -> bool:
        """Erase the subscription with its pending pushes (RFC 8620 7.2: "the server MUST
        securely erase the URL and encryption keys"); whether it existed."""
        existed, latest, earliest = await self._destroy(
            keys=self._keys(account_id), args=[subscription_id, _now_s()]
        )
        await self._forget_due(account_id, [subscription_id])
        await self._publish(account_id, int(latest), int(earliest))
        return bool(int(existed))

    async def sweep_expired(self, now_s: int, limit: int) -> int:
        """Erase the expired subscriptions of up to ``limit`` accounts whose earliest expiry
        has passed, re-scoring each to its next expiry (or dropping it when none is left), and
        trim ``jg:push-subscribed`` of past scores; how many accounts were swept.

        RFC 8620 7.2: the server "MAY automatically destroy the push subscription at or after
        this time"; an owner who never calls again (an uninstalled app) would otherwise leave
        its URL and keys in Redis for ever. Called periodically by the delivery loop."""
        found = cast(
            list[bytes],
            await self._client.zrange(
                EXPIRY, "-inf", now_s, byscore=True, offset=0, num=max(limit, 0)
            ),
        )
        for member in found:
            account_id = text(member)
            latest, earliest, *purged = await self._sweep(keys=self._keys(account_id), args=[now_s])
            await self._forget_due(account_id, [text(p) for p in purged])
            await self._publish(account_id, int(latest), int(earliest))
        await self._client.zremrangebyscore(SUBSCRIBED, "-inf", now_s)
        return len(found)

    async def login(self, account_id: str) -> str | None:
        """The user name stored for background watching, if any."""
        value = await self._client.get(login_key(account_id))
        return None if value is None else text(value)

    async def enqueue_changes(
        self,
        account_id: str,
        states: dict[str, str],
        *,
        now_ms: int,
        delay_ms: int,
        min_interval_ms: int,
    ) -> int:
        """Merge ``states`` into what waits for each verified live subscription wanting any of
        them (a newer state of a type replaces an older one) and schedule each at
        ``max(now + delay, last sent + min interval)``, leaving an existing due entry alone;
        how many subscriptions now wait. One script; nothing more when the account has no
        subscription."""
        if not states:
            return 0
        reply = await self._enqueue(
            keys=self._keys(account_id),
            args=[now_ms, delay_ms, min_interval_ms, pack(states)],
        )
        if not reply:
            return 0
        due = {
            due_member(account_id, text(reply[i])): int(reply[i + 1])
            for i in range(0, len(reply), 2)
        }
        await self._client.zadd(DUE, due, nx=True)
        return len(due)

    async def claim(self, now_ms: int, limit: int, lease_ms: int) -> list[tuple[str, str]]:
        """Take up to ``limit`` due deliveries for ``lease_ms``: ``(account id, subscription
        id)`` pairs. One not settled (delivered, retried, destroyed) by then is due again."""
        members = await self._claim(keys=[DUE], args=[now_ms, limit, lease_ms])
        claimed = []
        for member in members:
            account_id, _, subscription_id = text(member).partition(" ")
            claimed.append((account_id, subscription_id))
        return claimed

    async def pending(
        self, account_id: str, subscription_id: str
    ) -> tuple[Subscription | None, Pending | None]:
        """The subscription and what waits for it, read together."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hget(subscriptions_key(account_id), subscription_id)
            pipe.hget(pending_key(account_id), subscription_id)
            raw, waiting = await pipe.execute()
        return (
            None if raw is None else decode(raw),
            None if waiting is None else decode_pending(waiting),
        )

    async def delivered(
        self,
        account_id: str,
        subscription_id: str,
        sent_pending: Pending | None,
        *,
        now_ms: int,
        min_interval_ms: int,
    ) -> None:
        """``sent_pending`` reached the push service at ``now_ms``: take from the pending entry
        what was sent and is unchanged, then settle the due entry (next due at ``now_ms +
        min_interval_ms`` if anything remains). A state merged while the push was on its way
        stays pending and due.

        Only a push carrying ``changed`` states counts as sent for the per-subscription
        interval: a PushVerification alone records no last-sent time, so the first StateChange
        after the client verifies goes without waiting out ``min_interval_ms``."""
        await self._settle(
            account_id, subscription_id, sent_pending, now_ms, min_interval_ms, sent=True
        )

    async def drop(
        self,
        account_id: str,
        subscription_id: str,
        given_up: Pending | None,
        *,
        now_ms: int,
        min_interval_ms: int,
    ) -> None:
        """Give up ``given_up`` (too many attempts, a refusing push service, or None: nothing
        was pending) without counting it as sent; what was merged since stays due."""
        await self._settle(
            account_id, subscription_id, given_up, now_ms, min_interval_ms, sent=False
        )

    async def _settle(
        self,
        account_id: str,
        subscription_id: str,
        done: Pending | None,
        now_ms: int,
        min_interval_ms: int,
        *,
        sent: bool,
    ) -> None:
        counted = sent and bool((done or {}).get("changed"))
        remains = await self._delivered(
            keys=self._keys(account_id),
            args=[subscription_id, pack(dict(done or {})), now_ms, int(counted)],
        )
        member = due_member(account_id, subscription_id)
        next_due = now_ms + min_interval_ms if counted or not sent else now_ms
        if int(remains):
            # Replaces the claim's lease: no moment without a due entry.
            await self._client.zadd(DUE, {member: next_due})
            return
        await self._undue(account_id, subscription_id, next_due)

    async def _undue(self, account_id: str, subscription_id: str, due_ms: int) -> None:
        """Remove the due entry of a subscription with nothing pending. A merge between the
        account's step and the ZREM found the entry there and left it: look again after."""
        member = due_member(account_id, subscription_id)
        await self._client.zrem(DUE, member)
        if await self._client.hexists(pending_key(account_id), subscription_id):
            await self._client.zadd(DUE, {member: due_ms}, nx=True)

    async def retry_at(
        self, account_id: str, subscription_id: str, due_ms: int, attempts: int
    ) -> None:
        """Try again at ``due_ms`` (the ``attempts`` made so far kept with the pending entry)."""
        pending = await self._retry(
            keys=self._keys(account_id), args=[subscription_id, due_ms, attempts]
        )
        member = due_member(account_id, subscription_id)
        if int(pending):
            await self._client.zadd(DUE, {member: due_ms})
            return
        await self._undue(account_id, subscription_id, due_ms)

    async def subscribed_until(self, account_id: str) -> float | None:
        """``jg:push-subscribed``'s score of the account: until when it wants watching."""
        score = await self._client.zscore(SUBSCRIBED, account_id)
        return None if score is None else float(score)

    async def _forget_due(self, account_id: str, subscription_ids: list[str]) -> None:
        if subscription_ids:
            await self._client.zrem(DUE, *(due_member(account_id, s) for s in subscription_ids))

    async def _publish(self, account_id: str, latest: int, earliest: int) -> None:
        """Set the account's ``jg:push-subscribed`` and ``jg:push-expiry`` scores from its
        step, then read the account again and raise the first or lower the second if a
        concurrent writer's change was overwritten (see the module's doc)."""
        if latest > 0:
            await self._client.zadd(SUBSCRIBED, {account_id: latest})
        else:
            await self._client.zrem(SUBSCRIBED, account_id)
        if earliest > 0:
            await self._client.zadd(EXPIRY, {account_id: earliest})
        else:
            await self._client.zrem(EXPIRY, account_id)
        again, first = await self._latest(keys=self._keys(account_id), args=[_now_s()])
        if int(again) > latest:
            await self._client.zadd(SUBSCRIBED, {account_id: int(again)}, gt=True)
        if int(first) > 0 and (earliest == 0 or int(first) < earliest):
            await self._client.zadd(EXPIRY, {account_id: int(first)}, lt=True)

    async def _heal(self, account_id: str, subscription_ids: list[str], now_ms: int) -> None:
        """Schedule pending deliveries that lost their due entry (a crash between a write's
        account step and its ZADD)."""
        members = [due_member(account_id, s) for s in subscription_ids]
        scores = await self._client.zmscore(DUE, members)
        lost = {m: now_ms for m, score in zip(members, scores, strict=True) if score is None}
        if lost:
            await self._client.zadd(DUE, lost, nx=True)


_INSTANCES: weakref.WeakKeyDictionary[Store, PushSubscriptions] = weakref.WeakKeyDictionary()


def _now_ms() -> int:
    return int(time.time() * 1000)
