"""Whether the account's index was caught up with the upstream lately, by any replica.

Within the sync interval the index is trusted as it is: a burst of requests costs one upstream
check, not one each. The mark is a key that expires with the interval, so every replica sees
the same answer and nothing has to clear it.

Nothing clears a mark early either (it only expires, or a later catch-up sets it again), so
once a process has read how long a mark has left it knows the answer until then without
asking Redis again: :class:`FreshMarks` remembers that, and a warm request costs no Redis
round trip for it. Another replica's catch-up is still seen within the interval, as before.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.cache.keys import AccountKeys

# Accounts whose marks a process remembers before it forgets the expired ones.
MARKS_KEPT = 10_000


class Freshness:
    """The account's caught-up mark."""

    def __init__(self, client: Redis | RedisCluster, account_id: str) -> None:
        self._client = client
        self._key = AccountKeys(account_id).caught_up
        self.account_id = account_id

    async def fresh_for(self) -> float:
        """Seconds the mark has left (0: there is none)."""
        left = await self._client.pttl(self._key)
        return max(0, int(left)) / 1000

    async def mark_fresh(self, seconds: float) -> None:
        """A catch-up just finished: trust the index for ``seconds``."""
        await self._client.set(self._key, "1", px=int(seconds * 1000))


class FreshMarks:
    """What this process knows of accounts' marks: until when each is known to be there."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    async def is_fresh(self, freshness: Freshness) -> bool:
        """Whether a catch-up finished within the interval it marked; from memory while a
        mark read before still holds."""
        now = time.monotonic()
        if self._until.get(freshness.account_id, 0.0) > now:
            return True
        left = await freshness.fresh_for()
        if left > 0:
            self._remember(freshness.account_id, now + left)
        return left > 0

    async def mark_fresh(self, freshness: Freshness, seconds: float) -> None:
        """:meth:`Freshness.mark_fresh`, remembered."""
        now = time.monotonic()
        await freshness.mark_fresh(seconds)
        self._remember(freshness.account_id, now + seconds)

    def forget(self, account_id: str) -> None:
        """The account's index turned out not to be this release's (gateway.cache.
        format_fence.OlderIndexFormat, whose reader dropped the mark in Redis): ask again."""
        self._until.pop(account_id, None)

    def _remember(self, account_id: str, until: float) -> None:
        if len(self._until) >= MARKS_KEPT:
            now = time.monotonic()
            self._until = {a: u for a, u in self._until.items() if u > now}
            if len(self._until) >= MARKS_KEPT:
                self._until.clear()  # a burst of accounts: they read their marks once more
        self._until[account_id] = until
