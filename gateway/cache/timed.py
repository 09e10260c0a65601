"""A Redis client that times its round trips, for the Redis latency metric.

Subclassing the client (rather than wrapping each call site) times everything the gateway sends
in one place: plain commands, Lua scripts (``EVALSHA``), MULTI/EXEC transactions and pipelines
(one round trip each, named ``MULTI`` and ``PIPELINE``), and the WATCHed reads of a lease
fence. What is reported is the command's name and a kind of failure, never a key or a value:
keys carry account ids.

The cluster client is timed the same way: one observation per command, per pipeline or
transaction, and per WATCHed read. redis-py's cluster client sends EXISTS and DEL through a
pipeline of its own (one command per slot), so those are reported as ``PIPELINE``; a command
that follows a MOVED or ASK redirection is one observation covering its retries.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis import exceptions
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster

# (command, seconds, failure kind or None); must be cheap and must not raise.
RedisObserver = Callable[[str, float, str | None], None]

T = TypeVar("T")
_COMMAND_NAME = re.compile(r"[A-Z][A-Z_.-]{0,31}(?: [A-Z][A-Z_.-]{0,31})?")


class TimedRedis(Redis):
    """``redis.asyncio.Redis`` reporting every round trip to ``observer``."""

    observer: RedisObserver | None = None
    # Clients this one depends on and closes with itself (the Sentinels of a Sentinel master).
    companions: tuple[Redis, ...] = ()

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for companion in self.companions:
            await companion.aclose()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        call = super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return await _timed(self.observer, command_name(args), call)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = TimedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.observer = self.observer
        return pipe


class TimedPipeline(Pipeline):
    """A pipeline of :class:`TimedRedis`: one observation per round trip."""

    observer: RedisObserver | None = None

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if not self.command_stack and not self.watching:
            return await super().execute(raise_on_error)  # nothing is sent
        name = "MULTI" if self.is_transaction or self.explicit_transaction else "PIPELINE"
        return await _timed(self.observer, name, super().execute(raise_on_error))

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        # WATCH and the reads between WATCH and MULTI go out at once.
        call = super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return await _timed(self.observer, command_name(args), call)


class TimedRedisCluster(RedisCluster):
    """``redis.asyncio.cluster.RedisCluster`` reporting every round trip to ``observer``."""

    observer: RedisObserver | None = None

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return await _timed(
            self.observer, command_name(args), super().execute_command(*args, **kwargs)
        )

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:  # as RedisCluster.pipeline, which this replaces
            raise exceptions.RedisClusterException("shard_hint is deprecated in cluster mode")
        # redis-py's annotations leave an attribute of ClusterPipeline abstract that its own
        # pipeline() fills at run time as well.
        pipe = TimedClusterPipeline(self, transaction)  # type: ignore[abstract]
        pipe.observer = self.observer
        return pipe


class TimedClusterPipeline(ClusterPipeline):
    """A pipeline of :class:`TimedRedisCluster`: one observation per round trip.

    In a transaction, WATCH and the commands between WATCH and MULTI are sent at once
    (``execute_command`` then returns a coroutine instead of the pipeline); each is timed.
    """

    observer: RedisObserver | None = None
    _watched = False

    async def watch(self, *names: Any) -> None:  # type: ignore[override]
        # ClusterPipeline.watch is a coroutine; the command mixin it overrides is not.
        self._watched = True
        await _timed(self.observer, "WATCH", super().watch(*names))  # type: ignore[no-untyped-call]

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        queued = super().execute_command(*args, **kwargs)
        # Not isawaitable: the pipeline itself is awaitable (it initialises).
        if inspect.iscoroutine(queued):
            return _timed(self.observer, command_name(args), queued)
        return queued

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        sent = len(self) > 0 or self._watched
        self._watched = False
        call = super().execute(raise_on_error, allow_redirections)
        if not sent:
            return await call  # nothing is sent
        return await _timed(self.observer, "MULTI" if self._transaction else "PIPELINE", call)


def command_name(args: tuple[Any, ...]) -> str:
    """The command's name for a label ("GET", "EVALSHA"), or OTHER."""
    first = args[0] if args else b""
    name = (first.decode("ascii", "replace") if isinstance(first, bytes) else str(first)).upper()
    return name if _COMMAND_NAME.fullmatch(name) else "OTHER"


def failure_kind(exc: BaseException) -> str:
    """A small closed set of failure kinds; the exception's text may quote keys."""
    if isinstance(exc, exceptions.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(
        exc,
        exceptions.ConnectionError
        | ConnectionError
        | exceptions.RedisClusterUnreachableError
        | exceptions.SlotNotCoveredError,
    ):
        return "connection"
    if isinstance(exc, exceptions.WatchError):
        return "watch"
    if isinstance(exc, exceptions.NoScriptError):
        return "noscript"
    if isinstance(exc, exceptions.ResponseError):
        return "response"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "other"


async def _timed(observer: RedisObserver | None, name: str, call: Awaitable[T]) -> T:
    if observer is None:
        return await call
    started = time.perf_counter()
    try:
        result = await call
    except BaseException as exc:
        observer(name, time.perf_counter() - started, failure_kind(exc))
        raise
    observer(name, time.perf_counter() - started, None)
    return result
