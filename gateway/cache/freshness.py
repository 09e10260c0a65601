"""Whether the account's index was caught up with the upstream lately, by any replica.

Within the sync interval the index is trusted as it is: a burst of requests costs one upstream
check, not one each. The mark is a key that expires with the interval, so every replica sees
the same answer and nothing has to clear it.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.cache.keys import AccountKeys


class Freshness:
    """The account's caught-up mark."""

    def __init__(self, client: Redis | RedisCluster, account_id: str) -> None:
        self._client = client
        self._key = AccountKeys(account_id).caught_up

    async def is_fresh(self) -> bool:
        """Whether a catch-up finished within the interval it marked."""
        return bool(await self._client.exists(self._key))

    async def mark_fresh(self, seconds: float) -> None:
        """A catch-up just finished: trust the index for ``seconds``."""
        await self._client.set(self._key, "1", px=int(seconds * 1000))
