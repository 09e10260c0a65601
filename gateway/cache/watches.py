"""Who wants push for an account, and which replica watches it upstream.

Demand: each replica with push listeners of an account keeps its id in the account's
``push-demand`` zset, scored with the time until which it vouches for them; it heartbeats the
score well before then, so a replica that dies stops counting within one ttl. Watch: the
replica holding the account's ``push-watch`` lease runs its one upstream watcher. The lease is
``SET NX PX`` with a token; renewing and releasing compare the token in Lua, so a replica whose
lease expired (a long pause) never extends or deletes its successor's. Both keys carry the
account's hash tag, so the scripts touching both run on a cluster too.

Every replica renews all its leases and heartbeats all its accounts in one pipeline per tick
(one round trip per cluster node), not one per account: one EVAL per account heartbeaten (which
also says whether the account's lease is free), one per lease renewed. Scores are wall-clock
seconds of the replica writing them: replicas must keep their clocks in step (NTP) within a
fraction of ttl.

Subscribed accounts (issue 17; background watching, gateway/push/background.py): the
PushSubscription store (gateway/cache/push_subscriptions.py, contracts17 A) keeps the
server-wide ``jg:push-subscribed`` zset (account id -> the latest expiry, epoch s, of its
verified subscriptions) and each account's ``jg:{a}:push-login`` (the name its owner logs in
with; both names come from that module, their owner). An account there, unexpired and with
a login, is wanted watched like one with listeners; its lease is the same ``push-watch`` key,
taken with a plain ``SET NX PX`` (the zset is in another slot than the lease, so no script can
check both on a cluster: an account whose subscriptions expire meanwhile is watched until the
holder's next round finds it unwanted).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import NoScriptError

from gateway.cache.keys import AccountKeys
from gateway.cache.locks import RELEASE_IF_OURS, RENEW_IF_OURS
from gateway.cache.push_subscriptions import SUBSCRIBED, login_key

# KEYS: the demand zset, the lease. ARGV: our replica id, its score (vouched until), now (s),
# the zset's ttl (ms). Heartbeats the demand, drops entries of replicas that stopped, and
# returns 1 if nobody holds the lease.
_BEAT = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1 - redis.call('EXISTS', KEYS[2])
"""
# KEYS: the demand zset, the lease. ARGV: now (s). 1 if someone wants the account watched and
# nobody holds the lease (read only).
_WANTED = """
if redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf') == 0 then
  return 0
end
return 1 - redis.call('EXISTS', KEYS[2])
"""
# KEYS: the demand zset, the lease. ARGV: now (s), our value, ttl (ms). 1 if taken: someone
# still wants the account watched and nobody holds the lease.
_TAKE = """
if redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf') == 0 then
  return 0
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return 1
end
return 0
"""


# KEYS: the push-login, the lease. 1 if the account names a login and nobody holds the lease
# (read only).
_FREE_SUBSCRIBED = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
return 1 - redis.call('EXISTS', KEYS[2])
"""


class WatchLease:
    """This replica's lease on watching one account; see the module docstring."""

    def __init__(
        self, client: Redis | RedisCluster, account_id: str, value: str, ttl: float
    ) -> None:
        self._client = client
        self.account_id = account_id
        self._key = AccountKeys(account_id).push_watch
        self._value = value
        self._ttl_ms = int(ttl * 1000)

    def __repr__(self) -> str:
        return f"<WatchLease {self.account_id}>"

    async def release(self) -> None:
        """Let go of the lease if it is still ours (a successor's stays)."""
        await self._client.eval(RELEASE_IF_OURS, 1, self._key, self._value)

    def queue_renew(self, pipe: Pipeline | ClusterPipeline) -> None:
        """Queue pushing the expiry back a full ttl in ``pipe``; its result 0: the lease is
        lost (expired, or another's now), and the watcher must stop at once."""
        pipe.eval(RENEW_IF_OURS, 1, self._key, self._value, self._ttl_ms)


class WatchStore:
    """Demand and watch leases of every account, for one replica's WatchManager."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self._client = client
        # Sent as EVALSHA: a full round asks about up to a page of accounts per tick.
        self._free_subscribed = client.register_script(_FREE_SUBSCRIBED)

    async def heartbeat(self, replica_id: str, account_ids: Sequence[str], ttl: float) -> set[str]:
        """``replica_id`` has listeners of ``account_ids`` for the next ``ttl`` seconds; those
        of them whose lease nobody holds (one EVAL each, in one pipeline).

        Entries of replicas that stopped heartbeating are dropped on the way, and a zset
        nobody heartbeats any more expires by itself."""
        now = time.time()
        return await self._each(
            account_ids,
            lambda pipe, keys: pipe.eval(
                _BEAT,
                2,
                keys.push_demand,
                keys.push_watch,
                replica_id,
                now + ttl,
                now,
                int(2 * ttl * 1000),
            ),
        )

    async def wanted(self, account_ids: Sequence[str]) -> set[str]:
        """Those of ``account_ids`` some replica wants watched and nobody watches (one
        read-only EVAL each, in one pipeline)."""
        now = time.time()
        return await self._each(
            account_ids,
            lambda pipe, keys: pipe.eval(_WANTED, 2, keys.push_demand, keys.push_watch, now),
        )

    async def _each(
        self, account_ids: Sequence[str], queue: Callable[[Any, AccountKeys], object]
    ) -> set[str]:
        """The accounts whose script, queued by ``queue`` one per account in one pipeline,
        answered true."""
        if not account_ids:
            return set()
        pipe = self._client.pipeline(transaction=False)
        for account_id in account_ids:
            queue(pipe, AccountKeys(account_id))
        answers = await pipe.execute()
        return {a for a, ok in zip(account_ids, answers, strict=True) if ok}

    async def withdraw(self, replica_id: str, account_id: str) -> None:
        """``replica_id`` has no listener of ``account_id`` any more."""
        await self._client.zrem(AccountKeys(account_id).push_demand, replica_id)

    async def demanded(self, account_ids: Sequence[str]) -> set[str]:
        """Those of ``account_ids`` some replica has listeners of now (one pipeline)."""
        if not account_ids:
            return set()
        now = time.time()
        pipe = self._client.pipeline(transaction=False)
        for account_id in account_ids:
            pipe.zcount(AccountKeys(account_id).push_demand, f"({now}", "+inf")
        counts = await pipe.execute()
        return {a for a, count in zip(account_ids, counts, strict=True) if count}

    async def take_many(
        self, account_ids: Sequence[str], replica_id: str, ttl: float
    ) -> dict[str, WatchLease]:
        """The leases of those of ``account_ids`` someone wants watched and nobody holds,
        taken in one pipeline (one EVAL each)."""
        if not account_ids:
            return {}
        now = time.time()
        values = [f"{replica_id}:{secrets.token_hex(8)}" for _ in account_ids]
        pipe = self._client.pipeline(transaction=False)
        for account_id, value in zip(account_ids, values, strict=True):
            keys = AccountKeys(account_id)
            pipe.eval(_TAKE, 2, keys.push_demand, keys.push_watch, now, value, int(ttl * 1000))
        taken = await pipe.execute()
        return {
            account_id: WatchLease(self._client, account_id, value, ttl)
            for account_id, value, ok in zip(account_ids, values, taken, strict=True)
            if ok
        }

    async def renew_all(self, leases: Sequence[WatchLease]) -> list[bool]:
        """Renew each of ``leases``, in one pipeline: whether each is still ours."""
        if not leases:
            return []
        pipe = self._client.pipeline(transaction=False)
        for lease in leases:
            lease.queue_renew(pipe)
        return [bool(renewed) for renewed in await pipe.execute()]

    # -- subscribed accounts (background watching) ----------------------------------------

    async def subscribed_page(self, offset: int, count: int) -> list[str]:
        """``count`` accounts of ``jg:push-subscribed`` whose subscriptions have not expired,
        from the ``offset``-th on (in expiry order: one ZRANGE)."""
        members = await self._client.zrange(
            SUBSCRIBED,
            f"({int(time.time())}",
            "+inf",
            byscore=True,
            offset=offset,
            num=count,
        )
        return [_text(m) for m in members]

    async def free_subscribed(self, account_ids: Sequence[str]) -> set[str]:
        """Those of ``account_ids`` (found subscribed) that name a login and whose lease
        nobody holds (one read-only EVALSHA each, in one pipeline; the script is loaded and the
        pipeline sent again when a node does not know it: a restart, a new node)."""
        if not account_ids:
            return set()
        sha = self._free_subscribed.sha
        for _ in range(2):
            pipe = self._client.pipeline(transaction=False)
            for account_id in account_ids:
                keys = AccountKeys(account_id)
                pipe.evalsha(sha, 2, login_key(account_id), keys.push_watch)
            answers = await pipe.execute(raise_on_error=False)
            if not any(isinstance(answer, NoScriptError) for answer in answers):
                break
            # On a cluster SCRIPT LOAD goes to every primary.
            sha = await self._client.script_load(_FREE_SUBSCRIBED)
        failed = next((a for a in answers if isinstance(a, Exception)), None)
        if failed is not None:
            raise failed
        return {a for a, ok in zip(account_ids, answers, strict=True) if ok}

    async def subscribed(self, account_ids: Sequence[str]) -> set[str]:
        """Those of ``account_ids`` with unexpired verified subscriptions and a login (one
        ZSCORE and one EXISTS each, in one pipeline)."""
        if not account_ids:
            return set()
        now = time.time()
        pipe = self._client.pipeline(transaction=False)
        for account_id in account_ids:
            pipe.zscore(SUBSCRIBED, account_id)
            pipe.exists(login_key(account_id))
        answers = await pipe.execute()
        return {
            account_id
            for account_id, expires, login in zip(
                account_ids, answers[::2], answers[1::2], strict=True
            )
            if expires is not None and float(expires) > now and login
        }

    async def push_login(self, account_id: str) -> str | None:
        """The name the account's owner logs in with, or None when none is known."""
        value = await self._client.get(login_key(account_id))
        return None if value is None else _text(value)

    async def take_free(
        self, account_ids: Sequence[str], replica_id: str, ttl: float
    ) -> dict[str, WatchLease]:
        """The leases of those of ``account_ids`` nobody holds, taken in one pipeline (one
        SET NX PX each); for subscribed accounts, which the caller found wanted."""
        if not account_ids:
            return {}
        values = [f"{replica_id}:{secrets.token_hex(8)}" for _ in account_ids]
        pipe = self._client.pipeline(transaction=False)
        for account_id, value in zip(account_ids, values, strict=True):
            pipe.set(AccountKeys(account_id).push_watch, value, nx=True, px=int(ttl * 1000))
        taken = await pipe.execute()
        return {
            account_id: WatchLease(self._client, account_id, value, ttl)
            for account_id, value, ok in zip(account_ids, values, taken, strict=True)
            if ok
        }


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
