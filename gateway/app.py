"""The HTTP surface (RFC 8620 2 and 3): well-known redirect, Session, API; health probes.

Thin on purpose: each route authenticates, reads the request, and hands the work to what every
transport shares: :mod:`gateway.api_runner` for API requests. Every error leaves as the problem
document (RFC 7807) :mod:`gateway.problems` describes, never a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import logs, services
from gateway.api_runner import run_api
from gateway.blob_routes import add_blob_routes
from gateway.compression import ContentEncoding
from gateway.config import Settings
from gateway.env import RETRY_HINT, RetryHint
from gateway.eventsource_route import EventSourceEndpoint
from gateway.http import (
    JsonResponse,
    ProblemResponse,
    authenticate,
    read_body,
    services_of,
    while_connected,
)
from gateway.http_protocol import BODY_TIMED_OUT
from gateway.jmap.dispatch import writes_finished
from gateway.jmap.errors import problem
from gateway.jmap.session import (
    API_PATH,
    DOWNLOAD_PATH,
    EVENT_SOURCE_PATH,
    SESSION_PATH,
    WS_PATH,
)
from gateway.metrics import Metrics, MetricsPort
from gateway.problems import DESCRIBED
from gateway.push import tokens
from gateway.ws import WebSocketEndpoint

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
log = logging.getLogger(__name__)

# After the server stopped waiting for requests: how long their writes still get before the
# pools close. With the delayed sender's 5 s (services.stop) and the LOGOUTs it fits the 10 s
# the chart keeps between GATEWAY_SHUTDOWN_TIMEOUT_SECONDS and the pod's grace period.
WRITES_GRACE_SECONDS = 4.0

# Probes arrive every few seconds: their successes would drown the access log.
_QUIET_ROUTES = frozenset({HEALTH_PATH, READY_PATH})


def create_app(settings: Settings) -> FastAPI:
    metrics = Metrics()
    logs.redact_urls()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = await services.start(settings, metrics)
        try:
            yield
        finally:
            # Writes of requests the server stopped waiting for end first (a send recorded).
            left = await writes_finished(WRITES_GRACE_SECONDS)
            if left:
                log.warning("stopping with %d write(s) still running: they are cut", left)
            await services.stop(app.state.services)

    app = FastAPI(
        title="jmap-gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.metrics = metrics  # gateway.server reports cut connections to it
    # Inside the access log, which so logs the status the client got.
    app.add_middleware(ContentEncoding, applies=encoded_route)
    app.add_middleware(AccessLog, metrics=metrics)
    # Outermost, so a scrape is neither logged nor counted as a request.
    app.add_middleware(MetricsPort, metrics=metrics, port=settings.metrics_port)
    _add_error_handlers(app)
    _add_routes(app)
    # RFC 8887: JMAP over WebSocket, reached through entry(); gateway.server drains its sockets.
    app.state.websockets = WebSocketEndpoint(app.state)
    _add_probes(app)
    add_blob_routes(app)
    return app


def encoded_route(path: str) -> bool:
    """Whether responses at ``path`` may be content-encoded (gateway.compression): the API,
    the Session and downloads. Push streams are not (EventSource frames must reach the
    client as they are written; WebSocket has its own permessage-deflate)."""
    return path in (API_PATH, SESSION_PATH) or path.startswith(DOWNLOAD_PATH)


def entry(app: FastAPI, settings: Settings) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI app the server runs: ``app``, except that a WebSocket handshake at WS_PATH on
    the API port goes straight to the JMAP socket endpoint, a request of the event-source
    resource straight to its endpoint under the access log, and an API request straight to
    its endpoint (:class:`_DirectApi`).

    Every layer of the app (its middleware, the router, FastAPI's exit stack) would stay on
    the stack for the whole life of a socket, a few KB each time; an idle push connection
    should cost little more than uvicorn's own (see gateway.ws_protocol). Handshakes on the
    metrics port are left to MetricsPort, which refuses them.
    """
    sockets: WebSocketEndpoint = app.state.websockets
    events = AccessLog(app.state.eventsource, app.state.metrics)
    api = _DirectApi(app)
    metrics_port = settings.metrics_port

    def serve(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine of its own: the awaitable it returns is what uvicorn awaits, so no
        # frame of this function stays alive under a socket (the server says interface asgi3).
        server = scope.get("server")
        if not (metrics_port and server is not None and server[1] == metrics_port):
            if scope["type"] == "websocket" and scope["path"] == WS_PATH:
                return sockets(scope, receive, send)
            if scope["type"] == "http" and scope["path"] == EVENT_SOURCE_PATH:
                if scope["method"] not in EVENT_SOURCE_METHODS:
                    return app(scope, receive, send)  # the router's 405
                scope["route"] = EVENT_SOURCE_ROUTE  # the access log's label
                scope["app"] = app  # what gateway.http's helpers find the services by
                return events(scope, receive, send)
            if scope["type"] == "http" and scope["path"] == API_PATH and scope["method"] == "POST":
                return api(scope, receive, send)
        return app(scope, receive, send)

    return serve


class _AppEventSource:
    """The route's ASGI app: the endpoint the app's state holds."""

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        endpoint: EventSourceEndpoint = scope["app"].state.eventsource
        return endpoint(scope, receive, send)


# The event-source route: its path labels the access log and the metrics.
EVENT_SOURCE_METHODS = frozenset({"GET", "HEAD"})
EVENT_SOURCE_ROUTE = Route(EVENT_SOURCE_PATH, _AppEventSource(), methods=["GET"])


def _add_probes(app: FastAPI) -> None:
    @app.get(HEALTH_PATH)
    async def healthz() -> JsonResponse:
        # Liveness: the event loop answers. It never looks at Redis or the upstream, so their
        # outage makes pods unready, not restarted.
        return JsonResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    @app.get(READY_PATH)
    async def readyz(request: Request) -> JsonResponse:
        report = await services_of(request).readiness.report()
        return JsonResponse(
            report.to_json(),
            status_code=200 if report.ready else 503,
            headers={"Cache-Control": "no-store"},
        )


def _add_routes(app: FastAPI) -> None:
    @app.get("/.well-known/jmap")
    async def well_known() -> RedirectResponse:
        # RFC 8620 2.2: the well-known URL redirects to the Session resource.
        return RedirectResponse(settings_of(app).base_url + SESSION_PATH, status_code=301)

    @app.get(SESSION_PATH)
    async def session(request: Request) -> JsonResponse:
        principal = await authenticate(request)
        return JsonResponse(
            services_of(request).session(principal), headers={"Cache-Control": "no-cache, no-store"}
        )

    app.post(API_PATH)(_api)

    @app.post(tokens.TOKEN_PATH)
    async def push_token(request: Request) -> JsonResponse:
        # A page whose EventSource or WebSocket cannot carry its Authorization header asks for
        # a token here, with that header, and puts it in the stream's URL (gateway.push.tokens).
        principal = await authenticate(request)
        svc = services_of(request)
        token, says = tokens.mint(
            tokens.token_key(await svc.authenticator.server_secret()),
            principal,
            ttl=svc.settings.push_token_seconds,
            stream_seconds=svc.settings.push_token_stream_seconds,
        )
        # A token carries no credentials: this replica's keeper lends these to the watcher of
        # the account, so the page's token streams hear upstream changes too (Q1).
        svc.keeper.remember(principal.account_id, principal)
        return JsonResponse(tokens.minted(token, says), headers={"Cache-Control": "no-store"})

    # RFC 8620 7.3: a raw ASGI endpoint, so a long stream holds no response object; the
    # server reaches it through entry(), the route serves an app run without entry().
    app.state.eventsource = EventSourceEndpoint(app.state)
    app.router.routes.append(EVENT_SOURCE_ROUTE)


async def _api(request: Request) -> JsonResponse:
    """RFC 8620 3.1: the API request, answered by gateway.api_runner."""
    principal = await authenticate(request)
    svc = services_of(request)
    # Read before the runner takes a concurrency slot: a body trickling in holds none.
    body = await read_body(request, svc.limits.max_size_request)
    work = run_api(
        svc,
        principal,
        body,
        request.headers.get("content-type"),
        on_calls=lambda calls: _note_calls(request, calls),
    )
    hint = RetryHint()
    RETRY_HINT.set(hint)
    response = await while_connected(request, work, svc.metrics.http_abandoned.inc)
    retry = {"Retry-After": str(hint.seconds)} if hint.seconds else None
    return JsonResponse(response, headers=retry)


class _DirectApi:
    """``POST API_PATH`` as entry() serves it: the route's endpoint under the same access log,
    content coding and error answers as in the app, without the app's router, dependency
    solving and per-request middleware layers (a twentieth of a warm list screen's CPU,
    bench.load). The route stays in the app, which serves it when run without entry()."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.route = next(
            r for r in app.router.routes if isinstance(r, APIRoute) and r.path == API_PATH
        )
        # As the app orders them: outermost the server-error layer (a 500 problem document,
        # the failure raised on to the server), then the access log, then the content coding.
        self.stack: ASGIApp = ServerErrorMiddleware(
            AccessLog(ContentEncoding(self._serve, applies=encoded_route), app.state.metrics),
            handler=_described,
        )

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        scope["app"] = self.app  # what gateway.http's helpers find the services by
        scope["route"] = self.route  # the access log's label
        return self.stack(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response: Response
        try:
            response = await _api(request)
        except ClientDisconnect as exc:
            response = await _client_gone(request, exc)
        except HTTPException as exc:
            response = await _http_exception(request, exc)
        except DESCRIBED as exc:
            response = await _described(request, exc)
        await response(scope, receive, send)


def settings_of(app: FastAPI) -> Settings:
    return app.state.services.settings  # type: ignore[no-any-return]


def _note_calls(request: Request, calls: list[str]) -> None:
    """Keep the request's method names for its access log line."""
    request.scope["state"]["calls"] = calls


def _add_error_handlers(app: FastAPI) -> None:
    # Exception's handler answers unexpected failures (500); the server still sees them raised.
    for failure in (*DESCRIBED, Exception):
        app.add_exception_handler(failure, _described)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(HTTPException, _http_exception)


async def _described(request: Request, exc: Exception) -> ProblemResponse:
    return ProblemResponse.of(exc)


async def _client_gone(request: Request, exc: Exception) -> Response:
    """Nobody reads this answer (the server drops it): its status is for the access log and
    the metrics. 408 when the gateway cut a body too slow to arrive, otherwise 499, nginx's
    "client closed request"."""
    timed_out = request.scope.get("state", {}).get(BODY_TIMED_OUT)
    return Response(status_code=408 if timed_out else 499)


async def _http_exception(request: Request, exc: Exception) -> ProblemResponse:
    if not isinstance(exc, HTTPException):
        raise TypeError(f"not an HTTPException: {exc!r}")
    title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error")
    headers = dict(exc.headers) if exc.headers else None
    return ProblemResponse(problem(exc.status_code, title, str(exc.detail)), headers)


class AccessLog:
    """ASGI middleware writing the one structured log line and the metrics of each request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        scope.setdefault("state", {})

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.http_in_flight.inc()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.http_in_flight.dec()
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.request(route, _http_method(scope["method"]), status, seconds)
            if route not in _QUIET_ROUTES or status != 200:
                state = scope["state"]
                logs.access(
                    http_method=scope["method"],
                    route=route,
                    status=status,
                    duration_ms=round(seconds * 1000, 2),
                    account=state.get("account_id"),
                    calls=state.get("calls"),
                )


_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


def _http_method(method: str) -> str:
    """The request method as a label; a client can send any token, so others are OTHER."""
    return method if method in _HTTP_METHODS else "OTHER"
