"""The event-source resource (RFC 8620 7.3): a long ``text/event-stream`` response per client.

A stream is the request's own task waiting for the client to go away, one hub
:class:`~gateway.push.hub.Subscription` and one timer handle; a short-lived task writes when
the subscription or the timer wakes it (no queue: the subscription coalesces what the stream
has not written yet, so a slow reader costs O(types)). It writes:

* a ``state`` event with the current states first, or only those that differ from what the
  client's ``Last-Event-ID`` says it saw (nothing when nothing differs);
* a ``state`` event per coalesced change, each followed by an ``id`` that encodes every state
  the stream has sent (:mod:`gateway.push.statecodec`), so a reconnecting client resumes;
* a ``ping`` event when ``ping`` seconds passed since the last event, and an SSE comment line
  when nothing was written for :data:`KEEPALIVE_SECONDS` (proxies and dead peers, even with
  ``ping=0``).

It ends cleanly (the last chunk, then the response is complete) after a state event with
``closeafter=state``, when the hub closes the subscription (drain on shutdown, credentials
refused upstream), when a push token's stream lifetime is over and when a periodic recheck of
header credentials fails. The HTTP glue (authentication, problem documents) is
:mod:`gateway.eventsource_route`'s; this module sees plain ASGI callables.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from gateway.auth import Principal
from gateway.jmap.errors import problem
from gateway.problems import HttpProblem
from gateway.push import PUSH_TYPES, Changed, TypeStates
from gateway.push.hub import Closed, Subscription
from gateway.push.statecodec import decode, encode

if TYPE_CHECKING:
    from gateway.services import Services

# Plain ASGI shapes (the push layer does not import starlette).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Answers whether the credentials a stream was opened with still work.
Recheck = Callable[[], Awaitable[bool]]

# Decision Q6 (contracts15.md): an SSE comment (not an event, so ping=0 holds) at least this
# often keeps proxies from timing the response out and finds peers that went away silently.
KEEPALIVE_SECONDS = 60.0
KEEPALIVE = b": keepalive\n\n"
# Query variables looked at; more is not a URL a client built from eventSourceUrl.
MAX_QUERY_FIELDS = 32
# A ping longer than this many digits is clamped without being read as a number.
MAX_PING_DIGITS = 9

HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    # nginx: pass each event on at once instead of buffering the response.
    (b"x-accel-buffering", b"no"),
]


@dataclass(frozen=True)
class StreamParams:
    """The URI template's variables (RFC 8620 7.3), checked."""

    types: frozenset[str] | None  # None for "*"; names push does not know are left out
    close_after_state: bool
    ping: int  # seconds after clamping; 0: no ping events


def parse_params(query: Mapping[str, str], *, ping_min: int, ping_max: int) -> StreamParams:
    """The stream's parameters, or a 400 problem naming the variable that is missing or wrong.

    RFC 8620 7.3: the URL MUST contain ``types``, ``closeafter`` and ``ping``.
    """
    for name in ("types", "closeafter", "ping"):
        if name not in query:
            raise _bad(f"The variable {name!r} is missing (see the Session's eventSourceUrl).")
    return StreamParams(
        _types(query["types"]),
        _close_after(query["closeafter"]),
        _ping(query["ping"], ping_min, ping_max),
    )


def _types(value: str) -> frozenset[str] | None:
    # RFC 8620 7.3: "*" or a comma-separated list of type names; the server MUST only push
    # changes for the types in the list. A name push does not know has nothing to push, so it
    # is left out; an empty list asks for nothing but pings.
    if value == "*":
        return None
    return frozenset(value.split(",")) & PUSH_TYPES


def _close_after(value: str) -> bool:
    # RFC 8620 7.3: closeafter MUST be "state" or "no".
    if value not in ("state", "no"):
        raise _bad("The variable 'closeafter' must be 'state' or 'no'.")
    return value == "state"


def _ping(value: str, ping_min: int, ping_max: int) -> int:
    # RFC 8620 7.3: ping is a number of seconds, 0 for no ping events; the server may clamp
    # it (its minimum at most 30, its maximum at least 300: the settings hold to that).
    if not value.isascii() or not value.isdigit():
        raise _bad("The variable 'ping' must be a non-negative integer (seconds).")
    if len(value) > MAX_PING_DIGITS:
        return ping_max
    seconds = int(value)
    return 0 if seconds == 0 else min(max(seconds, ping_min), ping_max)


def _bad(detail: str) -> HttpProblem:
    return HttpProblem(problem(400, "Bad Request", detail))


def format_state_event(changed: Changed, event_id: str) -> bytes:
    """A ``state`` event (RFC 8620 7.3: the StateChange object of 7.1 as its data) and the
    event id that encodes what the stream has sent so far."""
    data = orjson.dumps({"@type": "StateChange", "changed": changed})
    return b"event: state\ndata: " + data + b"\nid: " + event_id.encode() + b"\n\n"


def format_ping_event(interval: int) -> bytes:
    """RFC 8620 7.3: the ping event's data is ``{"interval": n}``, the interval in use; it
    MUST NOT set a new event id, so it has no ``id`` field."""
    return b"event: ping\ndata: " + orjson.dumps({"interval": interval}) + b"\n\n"


def stream_params(scope: Scope, *, ping_min: int, ping_max: int) -> StreamParams:
    """The parameters of the request in ``scope`` (see :func:`parse_params`)."""
    try:
        pairs = parse_qsl(
            scope.get("query_string", b"").decode("latin-1"),
            keep_blank_values=True,
            max_num_fields=MAX_QUERY_FIELDS,
            encoding="utf-8",
            errors="strict",
        )
    except (ValueError, UnicodeDecodeError):
        raise _bad("The query string cannot be read.") from None
    return parse_params(dict(pairs), ping_min=ping_min, ping_max=ping_max)


def last_event_id(scope: Scope) -> str | None:
    """The ``Last-Event-ID`` header a reconnecting EventSource sends, if any."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"last-event-id":
            return bytes(value).decode("latin-1")
    return None


def known_states(account_id: str, event_id: str | None) -> TypeStates | None:
    """The account's states a client saw, from its Last-Event-ID; None: it told nothing we
    can use (no id, garbage, an id of another account), so it gets every state."""
    decoded = decode(event_id) if event_id else None
    return None if decoded is None else decoded.get(account_id)


async def event_source(
    scope: Scope,
    receive: Receive,
    send: Send,
    svc: Services,
    account_id: str,
    principal: Principal | None,
    *,
    until: float | None = None,
    recheck: Recheck | None = None,
    recheck_seconds: float = 0.0,
) -> None:
    """Serve one event-source request of an authenticated caller.

    Raises (before anything is sent) a 400 problem for bad parameters and the hub's refusals
    (429 over the listener limits, 503 while draining). ``principal`` is None for a push-token
    stream, which ends at ``until`` (unix seconds). ``recheck``, for header credentials, is
    awaited every ``recheck_seconds``: False ends the stream.
    """
    settings = svc.settings
    params = stream_params(
        scope, ping_min=settings.push_ping_min_seconds, ping_max=settings.push_ping_max_seconds
    )
    if scope.get("method") == "HEAD":
        # The headers a GET would get, without a stream behind them.
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    known = known_states(account_id, last_event_id(scope))
    hub = svc.push
    # Subscribed and left explicitly, not in an ``async with``: a context manager's generator
    # frame would live as long as the stream.
    sub = await hub.subscribe(account_id, principal, params.types)
    try:
        # The hub primed the subscription with the states it read once listening: a change
        # committed since then is in the subscription, so nothing falls between.
        current = _wanted(sub.known(), params.types)
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        stream = _Stream(sub, send, account_id, params, known or {})
        stream.deadlines(until, recheck, recheck_seconds)
        if not await stream.serve(receive, current, fresh=known is None):
            return
    finally:
        await hub.leave(sub)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _wanted(states: TypeStates, types: frozenset[str] | None) -> TypeStates:
    return states if types is None else {t: s for t, s in states.items() if t in types}


class _Stream:
    """The writing side of one stream: what it sent and when it has to write next.

    While idle a stream holds no task of its own: the request's task waits for the client to
    go away, the subscription calls :meth:`_wake` when a change waits, and one timer handle
    calls it when a ping, keepalive, recheck or the token's end is due. Each wake starts one
    short-lived task that writes what is due; when the stream has to end, that task cancels
    the request's wait, which then completes the response.
    """

    __slots__ = (
        "_account_id",
        "_ended",
        "_event_at",
        "_failure",
        "_params",
        "_recheck",
        "_recheck_at",
        "_recheck_seconds",
        "_send",
        "_sent",
        "_sub",
        "_task",
        "_timer",
        "_until",
        "_writer",
        "_written_at",
    )

    def __init__(
        self,
        sub: Subscription,
        send: Send,
        account_id: str,
        params: StreamParams,
        known: TypeStates,
    ) -> None:
        self._sub = sub
        self._send = send
        self._account_id = account_id
        self._params = params
        self._sent = dict(known)
        now = time.monotonic()
        self._event_at = now
        self._written_at = now
        self._until = math.inf
        self._recheck: Recheck | None = None
        self._recheck_seconds = 0.0
        self._recheck_at = math.inf
        self._task: asyncio.Task[Any] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ended = False
        self._failure: Exception | None = None

    def deadlines(self, until: float | None, recheck: Recheck | None, seconds: float) -> None:
        now = time.monotonic()
        if until is not None:
            self._until = now + (until - time.time())
        if recheck is not None and seconds > 0:
            self._recheck, self._recheck_seconds = recheck, seconds
            self._recheck_at = now + seconds

    async def serve(self, receive: Receive, current: TypeStates, *, fresh: bool) -> bool:
        """Write the initial event, then every change, ping and keepalive until the stream
        has to end (True: the caller completes the response) or the client goes away
        (False)."""
        # RFC 8620 7.3: a client whose Last-Event-ID shows it missed changes SHOULD get them
        # at once; without a usable id it gets every current state.
        initial = {
            name: state for name, state in current.items() if fresh or self._sent.get(name) != state
        }
        if initial and await self._state(initial):
            return True
        task = self._task = asyncio.current_task()
        assert task is not None
        self._sub.on_ready(self._wake)
        self._wake()  # whatever arrived since the subscription was primed, and the timer
        try:
            await _disconnected(receive)
        except asyncio.CancelledError:
            if not self._ended or task.uncancel() > 0:
                raise
            if self._failure is not None:
                raise self._failure from None
            return True
        except Exception:
            return False  # a receive that failed means the client is gone too
        finally:
            await self._stop()
        return False

    def _wake(self) -> None:
        """Something waits or is due: start the writer unless it runs (it looks again after
        its last write before it ends)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writer is None and not self._ended:
            self._writer = asyncio.ensure_future(self._write_due())

    async def _write_due(self) -> None:
        try:
            if await self._step():
                self._timer = asyncio.get_running_loop().call_later(self._timeout(), self._wake)
            else:
                self._end(None)
        except Exception as exc:  # a failed write ends the request as it would have inline
            self._end(exc)
        finally:
            self._writer = None

    async def _step(self) -> bool:
        """Write what waits and what is due; False when the stream has to end. Nothing is
        awaited after the last look at the subscription, so no wake is missed."""
        if not await self._drain():
            return False
        if not await self._due():
            return False
        return await self._drain()

    async def _drain(self) -> bool:
        """Write a state event per coalesced change; False when the stream has to end."""
        while True:
            try:
                states = self._sub.take()
            except Closed:
                return False
            if not states:
                return True
            if await self._state(states):
                return False

    def _end(self, failure: Exception | None) -> None:
        if not self._ended and self._task is not None:
            self._ended = True
            self._failure = failure
            self._task.cancel()

    async def _stop(self) -> None:
        """The stream is over: no more wakes, no timer, no writer."""
        self._ended = True
        self._sub.on_ready(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        writer = self._writer
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
            await asyncio.wait([writer])

    async def _state(self, states: TypeStates) -> bool:
        """Write a state event; True when the stream ends with it (closeafter=state)."""
        self._sent.update(states)
        event_id = encode({self._account_id: self._sent})
        await self._write(format_state_event({self._account_id: states}, event_id), event=True)
        # RFC 8620 7.3: with closeafter=state the server MUST end the response after pushing
        # a state event; the initial one is such an event.
        return self._params.close_after_state

    async def _due(self) -> bool:
        """Write what is due (ping, keepalive); False when the stream has to end (token
        lifetime over, credentials refused)."""
        now = time.monotonic()
        if now >= self._until:
            return False
        if self._recheck is not None and now >= self._recheck_at:
            if not await self._recheck():
                return False
            self._recheck_at = time.monotonic() + self._recheck_seconds
        ping = self._params.ping
        if ping and now - self._event_at >= ping:
            # RFC 8620 7.3: a ping whenever this time elapses since the previous event.
            await self._write(format_ping_event(ping), event=True)
        elif now - self._written_at >= KEEPALIVE_SECONDS:
            await self._write(KEEPALIVE, event=False)
        return True

    def _timeout(self) -> float:
        ping = self._params.ping
        due = min(
            self._event_at + ping if ping else math.inf,
            self._written_at + KEEPALIVE_SECONDS,
            self._until,
            self._recheck_at,
        )
        return max(0.0, due - time.monotonic())

    async def _write(self, chunk: bytes, *, event: bool) -> None:
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        now = time.monotonic()
        self._written_at = now
        if event:
            self._event_at = now


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
