"""JMAP over WebSocket (RFC 8887) at ``/jmap/ws``: API requests and push on one connection.

A raw ASGI endpoint (no Starlette ``WebSocket`` wrapper: an idle push connection should cost
little beyond uvicorn's own ~17 KB). Each socket is one task reading messages; a request runs
in a task of its own while it runs (requests on one socket run side by side, RFC 8887 4.3.2).
Push holds no task while idle: the subscription calls back when a change waits, and one
short-lived task writes what waits. Every message leaves through :meth:`JmapSocket._write`;
nothing is queued per socket.

* **Handshake** (RFC 8887 4.2): GET with ``jmap`` among the offered subprotocols, else 400;
  a draining gateway answers 503; Basic credentials from a foreign page's origin 403
  (:mod:`gateway.origin_check`); then the ``Authorization`` header as on every API request, or
  without one a push token in the ``access_token`` query parameter (gateway.push.tokens). A
  refusal is the HTTP problem document an API request would get (401 with WWW-Authenticate,
  429 with Retry-After, 503), sent before accepting.
* **Messages** (RFC 8887 4.3): text frames holding one JSON object with an ``@type``.
  ``Request`` runs as over HTTP (:func:`gateway.api_runner.run_api_document`: the same limits,
  the account's concurrency slots shared with HTTP) and is answered by a ``Response`` or a
  ``RequestError`` carrying its ``id`` as ``requestId``. ``WebSocketPushEnable`` subscribes to
  the account's changes (gateway.push.hub), ``WebSocketPushDisable`` ends that; changes go out
  as ``StateChange`` with a ``pushState`` from which a later connection resumes.
* **Closing**: a binary frame 1003; credentials refused on a periodic recheck, or a push
  token's stream lifetime over, 1008; a gateway shutting down 1001 once
  the requests in flight are answered. A request still running when the socket goes is
  cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

import orjson
from starlette.datastructures import Headers, QueryParams, State
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from gateway import logs
from gateway.api_runner import run_api_document
from gateway.auth import Principal, Unauthenticated
from gateway.http import authenticate_with
from gateway.jmap.errors import RequestError, problem
from gateway.jmap.protocol import JsonObject, load_json
from gateway.jmap.session import WS_PATH
from gateway.offload import sized
from gateway.origin_check import ambient_credentials_refused, site_origin
from gateway.problems import (
    DESCRIBED,
    RETRY_AFTER_SECONDS,
    HttpProblem,
    Problem,
    describe,
    too_many_concurrent,
)
from gateway.push import PUSH_TYPES, Changed, CloseReason, statecodec
from gateway.push.hub import Closed, Subscription
from gateway.push.states import current_states
from gateway.push.tokens import QUERY_PARAMETER, PushToken, verify_token
from gateway.services import Services
from gateway.ws_protocol import GOING_AWAY, SHUTDOWN_REASON

log = logging.getLogger(__name__)

# RFC 8887 4.2: the subprotocol a client must offer and the server names in its answer.
SUBPROTOCOL = "jmap"
# RFC 6455 7.4.1 close codes.
UNSUPPORTED_DATA = 1003
POLICY_VIOLATION = 1008
# Why the gateway closes a socket whose subscription the hub ended (contracts: Q5).
CLOSES: dict[CloseReason, tuple[int, str]] = {
    CloseReason.SHUTDOWN: (GOING_AWAY, SHUTDOWN_REASON),
    CloseReason.UNAUTHORIZED: (POLICY_VIOLATION, "authentication failed"),
    CloseReason.TOKEN_EXPIRED: (POLICY_VIOLATION, "token expired"),
}
BINARY_REASON = "JMAP messages are text frames"
# The metric label of each close the gateway sends, by its reason text (a closed set).
CLOSE_LABELS = {
    SHUTDOWN_REASON: "going_away",
    BINARY_REASON: "binary",
    "authentication failed": "unauthorized",
    "token expired": "token_expired",
}


class WebSocketEndpoint:
    """The ASGI app of :data:`gateway.jmap.session.WS_PATH`; it knows its open sockets, so a
    shutdown can tell each to go (:meth:`drain`)."""

    def __init__(self, state: State) -> None:
        # The app's state, whose services exist once the lifespan started them.
        self._state = state
        self._sockets: set[JmapSocket] = set()
        self._per_account: dict[str, int] = {}
        self._draining = False

    @property
    def open(self) -> int:
        """Sockets accepted and not yet ended."""
        return len(self._sockets)

    def drain(self) -> None:
        """Refuse new sockets (503) and close every open one with 1001 once its requests in
        flight are answered."""
        self._draining = True
        for socket in list(self._sockets):
            socket.going_away()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        svc: Services = self._state.services
        started = time.perf_counter()
        if (await receive())["type"] != "websocket.connect":
            return
        caller = await self._handshake(scope, svc)
        if isinstance(caller, Problem):
            await _refuse(send, caller)
            _log(scope, caller.status, started, None)
            return
        principal, token = caller
        if principal is not None:
            account_id = principal.account_id
        else:
            assert token is not None  # _handshake gives one or the other
            account_id = token.account_id
        refused = self._over_limit(svc, account_id)
        if refused is not None:
            await _refuse(send, refused)
            _log(scope, refused.status, started, account_id)
            return
        await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
        # The handshake's headers were read; the socket lives without them (~600 bytes).
        scope["headers"] = []
        socket = JmapSocket(svc, send, principal, token)
        self._sockets.add(socket)
        self._per_account[account_id] = self._per_account.get(account_id, 0) + 1
        svc.metrics.websockets_open.inc()
        if self._draining:
            socket.going_away()  # the drain began while this handshake was being checked
        try:
            await socket.serve(receive)
        finally:
            self._sockets.discard(socket)
            left = self._per_account.pop(account_id) - 1
            if left:
                self._per_account[account_id] = left
            svc.metrics.websockets_open.dec()
            _log(scope, 101, started, socket.account_id)

    def _over_limit(self, svc: Services, account_id: str) -> Problem | None:
        """Every socket counts, push or not: one that only makes requests, or a token's that
        never enables push, would otherwise be outside every bound while pings keep it open.
        The push listener limits serve (GATEWAY_PUSH_MAX_CONNECTIONS per replica,
        GATEWAY_PUSH_MAX_PER_ACCOUNT per account and replica)."""
        settings = svc.settings
        if len(self._sockets) >= settings.push_max_connections:
            detail = f"This server holds its {settings.push_max_connections} WebSockets."
        elif self._per_account.get(account_id, 0) >= settings.push_max_per_account:
            detail = f"The account has {settings.push_max_per_account} WebSockets here already."
        else:
            return None
        return describe(too_many_concurrent("maxPushConnections", detail + " Retry later."))

    async def _handshake(
        self, scope: Scope, svc: Services
    ) -> tuple[Principal | None, PushToken | None] | Problem:
        """Who is calling, or the problem the handshake is refused with."""
        if SUBPROTOCOL not in scope.get("subprotocols", ()):
            # RFC 8887 4.2: only a handshake naming "jmap" establishes a JMAP connection
            # (the client closes one answered without it); RFC 6455 4.2.2 lets the server
            # refuse the handshake with an HTTP error instead, which says why.
            detail = 'The WebSocket handshake must offer the "jmap" subprotocol (RFC 8887).'
            return Problem(problem(400, "Bad Request", detail))
        if self._draining or svc.push.draining:
            detail = "The gateway is shutting down; connect again."
            return Problem(
                problem(503, "Service Unavailable", detail), {"Retry-After": RETRY_AFTER_SECONDS}
            )
        headers = Headers(scope=scope)
        if ambient_credentials_refused(headers, svc.settings, site_origin(svc.settings)):
            detail = (
                "Basic credentials from this page's origin are refused; use a push token "
                "(POST /jmap/push/token) or a Bearer token."
            )
            return Problem(problem(403, "Forbidden", detail))
        token = QueryParams(scope.get("query_string", b"")).get(QUERY_PARAMETER)
        try:
            if "authorization" in headers or token is None:
                return await authenticate_with(svc, HTTPConnection(scope)), None
            verified = await verify_token(svc, token)
        except Exception as exc:  # the problem an API request would get (500 when unexpected)
            return describe(exc)
        scope.setdefault("state", {})["account_id"] = verified.account_id
        return None, verified


class JmapSocket:
    """One accepted JMAP WebSocket: its messages, requests in flight and subscription.

    ``principal`` is None for a socket opened with a push token: it may push, not call the
    API (a token is not a credential). Slots keep the idle socket small.
    """

    __slots__ = (
        "_closer",
        "_closing",
        "_going",
        "_pump",
        "_recheck",
        "_send",
        "_subscription",
        "_svc",
        "_tasks",
        "_timer",
        "account_id",
        "principal",
        "token",
    )

    def __init__(
        self,
        svc: Services,
        send: Send,
        principal: Principal | None,
        token: PushToken | None,
    ) -> None:
        self._svc = svc
        self._send = send
        self.principal = principal
        self.token = token
        self.account_id = principal.account_id if principal else token.account_id if token else ""
        self._closing = False
        self._going = False
        # Requests in flight; None while there are none (most sockets, most of the time).
        self._tasks: set[asyncio.Task[None]] | None = None
        self._subscription: Subscription | None = None
        # The task writing what the subscription holds, while it runs.
        self._pump: asyncio.Task[None] | None = None
        # The credential recheck and the close a callback started, while they run.
        self._recheck: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._arm()

    # -- the message loop -------------------------------------------------------------------

    async def serve(self, receive: Receive) -> None:
        """Read messages until the socket closes; then stop everything it started."""
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                if self._closing:
                    continue  # our close frame is on its way; uvicorn ends the socket
                text = message.get("text")
                if text is None:
                    # RFC 8887 4.3.1: data frames are text; an endpoint receiving a binary frame
                    # may close with 1003 (unsupported data).
                    await self._close(UNSUPPORTED_DATA, BINARY_REASON)
                    continue
                await self._message(text)
        finally:
            await self._end()

    async def _message(self, text: str) -> None:
        body = text.encode()
        limit = self._svc.limits.max_size_request
        if len(body) > limit:
            # RFC 8887 4.3.2: the limits of the Session apply to a message as to an HTTP body.
            too_large = RequestError.limit_exceeded(
                "maxSizeRequest", f"The request is larger than {limit} octets."
            )
            await self._error(too_large, None)
            return
        try:
            document = await sized(len(body), load_json, body)
        except RequestError as exc:
            await self._error(exc, None)  # RFC 8887 4.3.1: notJSON
            return
        message: JsonObject = document if isinstance(document, dict) else {}
        kind = message.get("@type")
        if kind == "Request":
            await self._request(message, len(body))
        elif kind == "WebSocketPushEnable":
            await self._enable(message)
        elif kind == "WebSocketPushDisable":
            await self._disable()
        else:
            # RFC 8887 4.3.1: valid JSON that is not an object of a known @type.
            detail = (
                'A message must be an object whose "@type" is Request, WebSocketPushEnable '
                "or WebSocketPushDisable."
            )
            await self._error(RequestError("notRequest", detail), None)

    # -- API requests (RFC 8887 4.3.2 - 4.3.4) ----------------------------------------------

    async def _request(self, document: JsonObject, size: int) -> None:
        request_id = document.get("id")
        if request_id is not None and not isinstance(request_id, str):
            await self._error(RequestError("notRequest", "id must be a String."), None)
            return
        refusal = self._refusal()
        if refusal is not None:
            # Answered from the loop itself: a client sending faster than it reads then
            # waits here (uvicorn reads no further message meanwhile) instead of piling up
            # refusals; only admitted requests run beside the loop, at most the limit.
            await self._error(refusal, request_id)
            return
        self._spawn(self._answer(document, size, request_id))

    def _refusal(self) -> Exception | None:
        """Why a new request is not run, if it is not."""
        if self._going:
            return _shutting_down()
        if self.principal is None:
            detail = (
                "A socket opened with a push token carries push notifications only; "
                "authenticate with the Authorization header to make requests."
            )
            return HttpProblem(problem(403, "Forbidden", detail))
        limit = self._svc.limits.max_concurrent_requests
        if self._tasks is not None and len(self._tasks) >= limit:
            # The account's slots are counted across HTTP and sockets by run_api_document;
            # this bounds the tasks one socket holds before they ask.
            return too_many_concurrent(
                "maxConcurrentRequests",
                f"More than {limit} requests are in progress for this account.",
            )
        return None

    async def _answer(self, document: JsonObject, size: int, request_id: str | None) -> None:
        assert self.principal is not None
        try:
            response = await run_api_document(self._svc, self.principal, document, size)
        except Exception as exc:  # every failure is one RequestError, never a closed socket
            await self._error(exc, request_id)
            return
        # RFC 8887 4.3.3: a Response carries the id of its Request as requestId.
        head: JsonObject = {"@type": "Response"}
        if request_id is not None:
            head["requestId"] = request_id
        await self._write({**head, **response})

    async def _error(self, exc: BaseException, request_id: str | None) -> None:
        # RFC 8887 4.3.4: the problem document HTTP would send, typed RequestError.
        await self._write(describe(exc).request_error(request_id))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a request (writing its own answer) beside the message loop."""
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)
            if not self._tasks:
                self._tasks = None
        if self._going and self._tasks is None:
            self._close_soon(GOING_AWAY, SHUTDOWN_REASON)

    # -- push (RFC 8887 4.3.5) --------------------------------------------------------------

    async def _enable(self, document: JsonObject) -> None:
        """RFC 8887 4.3.5.2: start (or change) push; with a pushState, send at once what
        changed since it."""
        data_types = document.get("dataTypes")
        push_state = document.get("pushState")
        if not (
            data_types is None
            or (isinstance(data_types, list) and all(isinstance(t, str) for t in data_types))
        ) or not (push_state is None or isinstance(push_state, str)):
            detail = "dataTypes must be null or a String[], pushState null or a String."
            await self._error(RequestError("notRequest", detail), None)
            return
        if self._going:
            await self._error(_shutting_down(), None)
            return
        # Names push does not know are ignored, as RFC 8620 7.3 says of EventSource types.
        types = None if data_types is None else frozenset(data_types) & PUSH_TYPES
        subscription = self._subscription
        if subscription is None:
            # The hub primes a new subscription with the account's current states.
            try:
                subscription = await self._svc.push.subscribe(
                    self.account_id, self.principal, types
                )
            except DESCRIBED as exc:
                await self._error(exc, None)  # over the listener limits: 429 "limit"
                return
            self._subscription = subscription
            subscription.on_ready(self._ready)
            self._ready()  # a change committed while subscribing
        else:
            subscription.set_types(types)
        if push_state is None:
            return
        try:
            current = await current_states(self._svc, self.account_id, types)
        except DESCRIBED as exc:
            await self._error(exc, None)
            return
        subscription.prime(current)
        decoded = statecodec.decode(push_state)
        # An unreadable pushState (another server's, or garbage) is taken as knowing nothing:
        # every current state goes out.
        known = (decoded or {}).get(self.account_id, {})
        differ = {name: state for name, state in current.items() if known.get(name) != state}
        if differ:
            await self._state_change(subscription, {self.account_id: differ})

    async def _disable(self) -> None:
        """RFC 8887 4.3.5.3: no more StateChange messages."""
        await self._unsubscribe()

    def _ready(self) -> None:
        """The subscription holds a change or closed: start the writer unless it runs (it
        looks again after each write)."""
        if self._pump is None and self._subscription is not None:
            self._pump = asyncio.ensure_future(self._push(self._subscription))

    async def _push(self, subscription: Subscription) -> None:
        """Write what the subscription coalesced until nothing waits, then end."""
        try:
            while (waiting := subscription.take()) is not None:
                await self._state_change(subscription, {self.account_id: waiting})
        except Closed as closed:
            if closed.reason is CloseReason.SHUTDOWN:
                self.going_away()  # answer what is in flight first
            else:
                self._close_soon(*CLOSES[closed.reason])
        finally:
            if self._pump is asyncio.current_task():
                self._pump = None

    async def _state_change(self, subscription: Subscription, changed: Changed) -> None:
        # RFC 8887 4.3.5.1: the pushState encodes the account's state as the client now knows
        # it: every state it was sent, over the states the subscription started from.
        push_state = statecodec.encode({self.account_id: subscription.known()})
        await self._write({"@type": "StateChange", "changed": changed, "pushState": push_state})

    async def _unsubscribe(self) -> None:
        pump, subscription = self._pump, self._subscription
        self._pump = self._subscription = None
        if subscription is not None:
            subscription.on_ready(None)
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        if subscription is not None:
            await self._svc.push.leave(subscription)

    # -- deadlines: token lifetime and credential rechecks --------------------------------

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        if self.token is not None:
            # A stream opened with a push token ends at its stream_until (gateway.push.tokens).
            delay = max(0.0, self.token.stream_until - time.time())
            self._timer = loop.call_later(
                delay, self._close_soon, *CLOSES[CloseReason.TOKEN_EXPIRED]
            )
        elif self.principal is not None:
            delay = float(self._svc.settings.push_recheck_seconds)
            self._timer = loop.call_later(delay, self._start_recheck)

    def _start_recheck(self) -> None:
        self._timer = None
        if not self._closing:
            self._recheck = asyncio.ensure_future(self._check_credentials())

    async def _check_credentials(self) -> None:
        """Credentials the upstream now refuses (a changed password) end the socket (1008)."""
        assert self.principal is not None
        try:
            await self._svc.authenticator.recheck(self.principal.login.credentials, None)
        except Unauthenticated:
            await self._close(*CLOSES[CloseReason.UNAUTHORIZED])
            return
        except Exception as exc:  # Redis or the upstream down: the socket stays, checked later
            log.warning("WebSocket credentials not rechecked: %s", type(exc).__name__)
        finally:
            self._recheck = None
        self._arm()

    # -- writing and closing ----------------------------------------------------------------

    async def _write(self, message: JsonObject) -> None:
        """Send one JSON message: the only way anything but a close leaves the socket."""
        if self._closing:
            return
        text = orjson.dumps(message).decode()
        # The client went away (OSError), or uvicorn closed the socket itself (a message past
        # ws_max_size, the server's shutdown) and refuses more (RuntimeError): serve() hears
        # of it and ends.
        with contextlib.suppress(OSError, RuntimeError):
            await self._send({"type": "websocket.send", "text": text})

    async def _close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self._svc.metrics.websocket_closes.labels(CLOSE_LABELS[reason]).inc()
        with contextlib.suppress(OSError, RuntimeError):  # as in _write
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def _close_soon(self, code: int, reason: str) -> None:
        """Close from a callback (a timer, a finished task)."""
        if self._timer is not None:
            # Not always the timer's own call: a pending recheck or token timer would keep
            # the closed socket alive until it fired (up to an hour).
            self._timer.cancel()
            self._timer = None
        if not self._closing and self._closer is None:
            self._closer = asyncio.ensure_future(self._close(code, reason))

    def going_away(self) -> None:
        """The gateway is shutting down: no new requests; close with 1001 once the requests
        in flight are answered."""
        self._going = True
        if self._tasks is None:
            self._close_soon(GOING_AWAY, SHUTDOWN_REASON)

    async def _end(self) -> None:
        """The socket is gone: cancel what it started (nobody waits for it any more) and
        leave the hub."""
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        helpers = (self._recheck, self._closer)
        running = [*(self._tasks or ()), *(task for task in helpers if task is not None)]
        for task in running:
            task.cancel()
        if running:
            # Their upstream connections are back in the pool (or dropped) before this
            # returns, as after an HTTP client goes away.
            await asyncio.wait(running)
        await self._unsubscribe()


def _shutting_down() -> HttpProblem:
    body = problem(503, "Service Unavailable", "The gateway is shutting down.")
    return HttpProblem(body, {"Retry-After": RETRY_AFTER_SECONDS})


async def _refuse(send: Send, refusal: Problem) -> None:
    """Answer the handshake with ``refusal``'s problem document (ASGI websocket.http.response)."""
    body = orjson.dumps(refusal.body)
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((name.lower().encode(), value.encode()) for name, value in refusal.headers.items()),
    ]
    await send(
        {"type": "websocket.http.response.start", "status": refusal.status, "headers": headers}
    )
    await send({"type": "websocket.http.response.body", "body": body})


def _log(scope: Scope, status: int, started: float, account_id: str | None) -> None:
    """The access log line of a socket, once it ends (or of its refused handshake)."""
    logs.access(
        http_method="GET",
        route=WS_PATH,
        status=status,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
        account=account_id or scope.get("state", {}).get("account_id"),
        calls=None,
    )
