"""The push announcements between replicas: Redis pub/sub, sharded on a cluster.

Every state change committed on any replica is published on the account's channel
(``jg:{<accountId>}:push``, keys.py); a replica with listeners of the account subscribes to
it. The payload is msgpack ``[kind, {type: state}, origin]``: ``changed`` carries the new
states, ``released`` says the account's watcher let go of its lease (push/watch.py), and
``origin`` is the publishing replica's id. A replica hears its own announcements too, so a
local listener learns of a local change the same way as a remote one.

On one server (or the master a Sentinel names) one pub/sub connection carries every channel.
On a cluster, channels are sharded (SPUBLISH / SSUBSCRIBE, Redis 7): a message only travels
to the shard owning the channel's slot, which is the account's hash tag, so the bus holds one
pub/sub connection per primary that owns a subscribed channel.

Pub/sub is at-most-once: what is published while a connection is down is lost. redis-py
reconnects a pub/sub connection and re-sends its subscriptions (:meth:`PubSub.on_connect`);
the bus then calls ``on_resubscribed`` so that the hub re-reads the current states of its
accounts and tells listeners what they missed.

When a slot moves to another primary (resharding, failover), the node that lost it ends the
shard subscriptions of that slot with an SUNSUBSCRIBE nobody asked for (Redis 7), and answers
MOVED to a re-sent SSUBSCRIBE: either way the bus reads the slot map again, subscribes the
channel on its new owner, and calls ``on_resubscribed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.crc import key_slot
from redis.exceptions import MovedError, RedisError

from gateway.cache.codec import pack, text, unpack
from gateway.cache.keys import AccountKeys, push_channel_account

log = logging.getLogger(__name__)

Kind = Literal["changed", "released"]
KINDS: frozenset[str] = frozenset({"changed", "released"})
# A connection that said nothing for this long is sent a PING; one that does not answer it
# within as long again is dropped and opened anew (then resubscribed and resynced): a peer
# gone without a word (a NAT that forgot the flow, a half-open socket) is noticed in at most
# twice this time, not at TCP's retransmission timeout.
PING_AFTER_SECONDS = 10.0
PING_MESSAGE = "jg-push-ping"
# Backoff between attempts to reach a Redis that refuses the pub/sub connection.
BACKOFF_FIRST_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 10.0
# Announcements read and not yet taken by the hub. When full the readers wait, Redis buffers
# for them, and past its client-output-buffer-limit drops the connection: a resync follows.
MAX_BACKLOG = 10_000
# Before reading the slot map again after a channel moved: the moves of one resharding step
# (or failover) arrive together and are placed in one batch, and a map that still lags
# (a MOVED follows) is not asked again in a tight loop.
REROUTE_PAUSE_SECONDS = 0.1
# Failed reads in a row after which a cluster node is taken for gone (a failover): its
# channels are placed again by the slot map.
NODE_GONE_FAILURES = 3
# A payload longer than this is not ours: five state strings take about 150 octets.
MAX_PAYLOAD = 2048


@dataclass(frozen=True)
class Announcement:
    """One message on an account's channel."""

    account_id: str
    kind: Kind
    changed: dict[str, str]  # {} for "released"
    origin: str  # replica id of the publisher


def encode(kind: Kind, changed: dict[str, str], origin: str) -> bytes:
    return pack([kind, changed, origin])


def decode(channel: bytes | str, data: Any) -> Announcement | None:
    """The announcement of a pub/sub message, or None for anything else (logged)."""
    account_id = push_channel_account(text(channel))
    if account_id is None or not isinstance(data, bytes) or len(data) > MAX_PAYLOAD:
        return None
    try:
        kind, changed, origin = unpack(data)
    except (ValueError, TypeError):
        return None
    valid = (
        kind in KINDS
        and isinstance(origin, str)
        and isinstance(changed, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in changed.items())
    )
    if not valid:
        return None
    return Announcement(account_id, cast(Kind, kind), changed, origin)


class PushBus:
    """Publishes and hears the push announcements of accounts (see the module's docstring).

    ``subscribe`` and ``unsubscribe`` are idempotent and serialised per connection, so a
    subscribe that returned has reached Redis before anything published after it.
    """

    def __init__(self, client: Redis | RedisCluster, replica_id: str) -> None:
        self._client = client
        self.replica_id = replica_id
        self._sharded = isinstance(client, RedisCluster)
        self._shards: dict[str, _Shard] = {}
        # The channels asked for, and the connection each was sent to (none while moving).
        self._wanted: set[str] = set()
        self._routes: dict[str, _Shard] = {}
        self._backlog: asyncio.Queue[Announcement] = asyncio.Queue(MAX_BACKLOG)
        # Channels whose slot left the node they were subscribed on, and who places them.
        self._moving: set[str] = set()
        self._rerouter: asyncio.Task[None] | None = None
        # Called (synchronously) after a reconnect re-sent every subscription of a connection.
        self.on_resubscribed: Callable[[], None] | None = None

    async def publish(self, account_id: str, changed: dict[str, str]) -> bool:
        """Announce new states; False (logged) when Redis did not take it."""
        return await self._publish(account_id, encode("changed", changed, self.replica_id))

    async def publish_released(self, account_id: str) -> bool:
        """Announce that the account's watch lease was let go; False (logged) on failure."""
        return await self._publish(account_id, encode("released", {}, self.replica_id))

    async def subscribe(self, account_id: str) -> None:
        """Hear the account's announcements; raises the Redis error when it cannot."""
        channel = AccountKeys(account_id).push_channel
        self._wanted.add(channel)
        shard = self._routes.get(channel) or await self._shard(channel)
        self._routes[channel] = shard
        await shard.add(channel)

    async def unsubscribe(self, account_id: str) -> None:
        """Stop hearing the account; a failure is logged (its messages are then ignored).

        Runs after a subscribe of the account still under way (the connection's lock), so
        the channel is never left subscribed by a listener that came and went at once.
        """
        channel = AccountKeys(account_id).push_channel
        self._wanted.discard(channel)
        shard = self._routes.pop(channel, None)
        if shard is None:
            return  # never subscribed, or moving: the move stops (_reroute)
        try:
            await shard.remove(channel)
        except (RedisError, OSError) as exc:
            log.warning("push: unsubscribe failed: %s", type(exc).__name__)

    async def messages(self) -> AsyncIterator[Announcement]:
        """Every announcement heard, from every connection, across reconnects (one consumer)."""
        while True:
            yield await self._backlog.get()

    async def aclose(self) -> None:
        if self._rerouter is not None:
            self._rerouter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rerouter
        shards, self._shards, self._routes = list(self._shards.values()), {}, {}
        self._wanted.clear()
        for shard in shards:
            await shard.close()

    async def _publish(self, account_id: str, payload: bytes) -> bool:
        channel = AccountKeys(account_id).push_channel
        try:
            if isinstance(self._client, RedisCluster):
                await self._client.spublish(channel, payload)
            else:
                await self._client.publish(channel, payload)
        except (RedisError, OSError) as exc:
            log.warning("push: publish failed: %s", type(exc).__name__)
            return False
        return True

    async def _shard(self, channel: str) -> _Shard:
        """The connection that carries ``channel``: the one of its slot's primary on a
        cluster, else the only one."""
        if not isinstance(self._client, RedisCluster):
            name, pool = "", self._client.connection_pool
        else:
            await self._client.initialize()
            node = self._client.get_node_from_key(channel)
            if node is None:
                raise RedisError("no cluster node serves the push channel's slot")
            name = node.name
            if name in self._shards:
                return self._shards[name]
            pool = ConnectionPool(
                connection_class=node.connection_class, max_connections=2, **node.connection_kwargs
            )
        shard = self._shards.get(name)
        if shard is None:
            shard = self._shards[name] = _Shard(self, name, pool, own_pool=self._sharded)
        return shard

    async def _heard(self, announcement: Announcement) -> None:
        await self._backlog.put(announcement)

    def _moved(self, shard: _Shard, channel: str) -> None:
        """``shard``'s node dropped ``channel``: subscribe it where the slot map says now.

        A node drops the shard channels of a slot whenever its own view of the slot's owner
        changes (Redis 7: CLUSTER SETSLOT ... NODE on the node gaining the slot too), so the
        map is read again rather than the dropping node taken for the loser.
        """
        if self._routes.get(channel) is shard:
            del self._routes[channel]
        self._moving.add(channel)
        if self._rerouter is None or self._rerouter.done():
            self._rerouter = asyncio.create_task(self._reroute(), name="push-bus-reroute")

    async def _reroute(self) -> None:
        assert isinstance(self._client, RedisCluster)
        log.info("push: subscribed channels left their node; subscribing them where they went")
        delay = BACKOFF_FIRST_SECONDS
        while self._moving:
            await asyncio.sleep(REROUTE_PAUSE_SECONDS)
            batch, self._moving = self._moving, set()
            try:
                await self._client.nodes_manager.initialize()
            except (RedisError, OSError) as exc:
                log.warning("push: reading the slot map failed: %s", type(exc).__name__)
                failed = batch
            else:
                failed = {channel for channel in batch if not await self._place(channel)}
            if failed:
                self._moving |= failed
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_SECONDS)
            else:
                delay = BACKOFF_FIRST_SECONDS
        # What was published between the move and now went to no one here.
        self._resubscribed()

    async def _place(self, channel: str) -> bool:
        """Subscribe a moved channel on its slot's owner; False (logged) when that failed."""
        if channel in self._routes or channel not in self._wanted:
            return True  # placed afresh by a subscribe meanwhile, or nobody listens any more
        shard: _Shard | None = None
        try:
            shard = await self._shard(channel)
            self._routes[channel] = shard
            await shard.add(channel)
        except (RedisError, OSError) as exc:
            log.warning("push: re-subscribing a moved channel failed: %s", type(exc).__name__)
            if shard is not None and self._routes.get(channel) is shard:
                del self._routes[channel]
            return False
        return True

    def _retired(self, shard: _Shard) -> None:
        if self._shards.get(shard.name) is shard:
            del self._shards[shard.name]

    def _resubscribed(self) -> None:
        if self.on_resubscribed is not None:
            try:
                self.on_resubscribed()
            except Exception:
                log.exception("push: on_resubscribed failed")


class _BusPubSub(PubSub):
    """redis-py's PubSub, telling the bus when a reconnect re-sent its subscriptions.

    Shard channels are re-sent one SSUBSCRIBE per slot: a command naming channels of several
    slots is refused (CROSSSLOT) even when one node owns them all.
    """

    def __init__(self, pool: ConnectionPool, *, sharded: bool, on_reconnect: Callable[[], None]):
        super().__init__(pool)
        self.sharded = sharded
        self._on_reconnect = on_reconnect

    async def on_connect(self, connection: Connection) -> None:
        try:
            if self.sharded:
                self.pending_unsubscribe_shard_channels.clear()
                by_slot: dict[int, list[Any]] = {}
                for channel in list(self.shard_channels):
                    by_slot.setdefault(_slot(channel), []).append(channel)
                for group in by_slot.values():
                    await self.ssubscribe(*group)
            else:
                await super().on_connect(connection)
        except BaseException:
            # A connection whose subscriptions were not all re-sent must not look healthy.
            await connection.disconnect()
            raise
        self._on_reconnect()


class _Shard:
    """One pub/sub connection, the channels asked of it and the task reading it."""

    def __init__(self, bus: PushBus, name: str, pool: ConnectionPool, *, own_pool: bool) -> None:
        self._bus = bus
        self.name = name  # the node's on a cluster
        self._pool = pool
        self._own_pool = own_pool
        self.pubsub = _BusPubSub(pool, sharded=own_pool, on_reconnect=bus._resubscribed)
        self.channels: set[str] = set()
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    async def add(self, channel: str) -> None:
        async with self._lock:
            if channel in self.channels:
                return
            if self.pubsub.sharded:
                await self.pubsub.ssubscribe(channel)
            else:
                await self.pubsub.subscribe(channel)
            self.channels.add(channel)
            if self._reader is None:
                self._reader = asyncio.create_task(self._read(), name="push-bus-reader")

    def forget(self, channel: str) -> None:
        """Drop ``channel`` without a word to Redis (its node already dropped it), so a
        reconnect does not send it there again."""
        self.channels.discard(channel)
        encoded = channel.encode()
        self.pubsub.shard_channels.pop(encoded, None)
        self.pubsub.shard_channels.pop(channel, None)

    async def remove(self, channel: str) -> None:
        async with self._lock:
            if channel not in self.channels:
                return
            self.channels.discard(channel)
            if self.pubsub.sharded:
                await self.pubsub.sunsubscribe(channel)
            else:
                await self.pubsub.unsubscribe(channel)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.pubsub.aclose()
        if self._own_pool:
            await self._pool.disconnect()

    async def _read(self) -> None:
        """Hand every message to the bus. A failure redis-py could not mend by itself (Redis
        down longer than its retries) is retried after a backoff: the next read reconnects.
        A connection silent too long is pinged, and dropped when the PONG does not come."""
        loop = asyncio.get_running_loop()
        delay = BACKOFF_FIRST_SECONDS
        heard, pinged = loop.time(), 0.0
        failures = 0
        while not (self.pubsub.sharded and not self.channels and failures):
            try:
                if pinged and loop.time() - pinged > PING_AFTER_SECONDS:
                    log.warning("push: pub/sub connection silent; opening it anew")
                    pinged = 0.0
                    await self._drop()
                elif not pinged and loop.time() - heard > PING_AFTER_SECONDS:
                    await self.pubsub.ping(PING_MESSAGE)
                    pinged = loop.time()
                message = await self.pubsub.get_message(timeout=PING_AFTER_SECONDS / 2)
            except MovedError as exc:
                # A re-sent SSUBSCRIBE reached a node that lost the slot.
                for channel in [c for c in self.channels if _slot(c) == exc.slot_id]:
                    self.forget(channel)
                    self._bus._moved(self, channel)
                continue
            except (RedisError, OSError) as exc:
                log.warning("push: pub/sub connection failed (%s); retrying", type(exc).__name__)
                failures += 1
                if self.pubsub.sharded and failures >= NODE_GONE_FAILURES:
                    for channel in list(self.channels):
                        self.forget(channel)
                        self._bus._moved(self, channel)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311
                delay = min(delay * 2, BACKOFF_MAX_SECONDS)
                heard, pinged = loop.time(), 0.0
                continue
            if message is None:
                continue
            delay, failures = BACKOFF_FIRST_SECONDS, 0
            heard, pinged = loop.time(), 0.0
            kind = message.get("type")
            if kind == "sunsubscribe" and text(message["channel"]) in self.channels:
                # Not asked for (remove() forgets first): the channel's slot left this node.
                channel = text(message["channel"])
                self.forget(channel)
                self._bus._moved(self, channel)
                continue
            if kind not in ("message", "smessage"):
                continue
            announcement = decode(message["channel"], message["data"])
            if announcement is None:
                log.debug("push: ignored a message that is not an announcement")
                continue
            await self._bus._heard(announcement)
        # A cluster node that failed and holds no channel any more: let it go.
        self._bus._retired(self)
        self._reader = None
        await self.pubsub.aclose()
        await self._pool.disconnect()

    async def _drop(self) -> None:
        """Close the connection; the next read opens it again, which resubscribes."""
        if self.pubsub.connection is not None:
            await self.pubsub.connection.disconnect()


def _slot(channel: bytes | str) -> int:
    return key_slot(channel if isinstance(channel, bytes) else channel.encode())
