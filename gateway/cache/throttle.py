"""Failed logins counted per client address and per user name, shared by every replica.

Each count lives in a key of its own that expires with its window (fixed windows: the first
failure starts one), so a replica that dies leaves nothing to clean up. A user name's count
stops logins from new addresses only: an address the user logged in from lately keeps working,
so an attacker who guesses at someone's name slows the guessing, not the user. The caller
passes keyed digests, never names or addresses (keys.py). Without Redis nothing is counted:
logins need no Redis, and the upstream's per-client penalty (told the client's address) holds.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.cache.keys import login_failures, login_known
from gateway.cache.store import STORE_UNAVAILABLE

log = logging.getLogger(__name__)

WINDOW_SECONDS = 300
# How long a successful login vouches for its address against its user name's count.
KNOWN_ADDRESS_SECONDS = 30 * 24 * 3600

# KEYS: one counter. ARGV: window (ms). Returns {count, milliseconds left in the window}.
_COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return {count, redis.call('PTTL', KEYS[1])}
"""


@dataclass(frozen=True)
class LoginKeys:
    """The digests one login attempt is counted under."""

    address: str
    username: str  # "" for a bearer token that names nobody: not counted by name
    pair: str  # the user name from this address


class LoginThrottle:
    """Refuses credential checks past ``per_address`` or ``per_username`` failures in a
    window; 0 turns a count off."""

    def __init__(self, client: Redis | RedisCluster, per_address: int, per_username: int) -> None:
        self._client = client
        self._count = client.register_script(_COUNT)
        self.per_address = per_address
        self.per_username = per_username

    async def wait_seconds(self, keys: LoginKeys) -> float:
        """How long before this attempt may be checked upstream (0: now)."""
        counted = self._counted(keys)
        if not counted:
            return 0.0
        pipe = self._client.pipeline(transaction=False)
        for key, _ in counted:
            pipe.get(key)
            pipe.pttl(key)
        pipe.exists(login_known(keys.pair))
        try:
            *answers, known = await pipe.execute()
        except STORE_UNAVAILABLE:
            # Logins need no Redis; the upstream's own per-client penalty still holds.
            log.warning("Redis unavailable: failed logins are not counted")
            return 0.0
        waits = [0]
        for index, (key, limit) in enumerate(counted):
            count, left_ms = answers[2 * index : 2 * index + 2]
            over = int(count or 0) >= limit
            # A user name's count spares the addresses the user logged in from lately.
            if over and not (key.startswith(_USER_PREFIX) and known):
                waits.append(left_ms)
        return max(waits) / 1000

    async def failed(self, keys: LoginKeys) -> None:
        with contextlib.suppress(*STORE_UNAVAILABLE):
            for key, _ in self._counted(keys):
                await self._count(keys=[key], args=[WINDOW_SECONDS * 1000])

    async def succeeded(self, keys: LoginKeys) -> None:
        if self.per_username and keys.username:
            with contextlib.suppress(*STORE_UNAVAILABLE):
                await self._client.set(login_known(keys.pair), b"1", ex=KNOWN_ADDRESS_SECONDS)

    def _counted(self, keys: LoginKeys) -> list[tuple[str, int]]:
        """The counters this attempt is checked against, with their limits."""
        counted = []
        if self.per_address:
            counted.append((login_failures("address", keys.address), self.per_address))
        if self.per_username and keys.username:
            counted.append((login_failures("user", keys.username), self.per_username))
        return counted


_USER_PREFIX = login_failures("user", "")
