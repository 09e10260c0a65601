"""Serving the app with uvicorn: the API and metrics ports, and a graceful shutdown.

One uvicorn server listens on both ports (the metrics middleware tells them apart), so a single
shutdown covers both. On SIGTERM or SIGINT uvicorn stops accepting at once, closes idle
keep-alive connections, lets requests in flight finish for up to
``GATEWAY_SHUTDOWN_TIMEOUT_SECONDS`` and cancels what is left; the app's lifespan then LOGOUTs
every upstream connection and closes Redis. The timeout must be shorter than the pod's grace
period, or the kubelet's SIGKILL cuts the requests and the LOGOUTs short.

Connections are served by :mod:`gateway.http_protocol` (uvicorn's httptools protocol with
deadlines for the request head and body, a bound on the head, and a bounded drain of a body
answered unread), which also lets a shutdown end connections that trickle, and WebSockets by
:mod:`gateway.ws_protocol` (wsproto, compression without context takeover, 1001 on shutdown).

Push streams never end by themselves, and uvicorn's shutdown would leave an EventSource
response running until the timeout cancels it and close WebSockets under their requests. So
:class:`GatewayServer` first drains push (:meth:`PushHub.drain`: every EventSource ends, every
WebSocket is told 1001 once its requests are answered) and waits up to
``GATEWAY_PUSH_DRAIN_SECONDS`` for them to go, then runs uvicorn's shutdown; the pod's grace
period must hold the preStop sleep, the drain, the shutdown timeout and the LOGOUTs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import uvicorn
from fastapi import FastAPI

from gateway.app import create_app, entry
from gateway.config import Settings
from gateway.http_protocol import EdgeLimits, protocol_class
from gateway.metrics import Metrics
from gateway.workers import Supervisor
from gateway.ws import WebSocketEndpoint
from gateway.ws_protocol import ws_protocol_class

log = logging.getLogger(__name__)

# Connections the kernel queues before the gateway accepts them (uvicorn's own default).
BACKLOG = 2048
# Octets a WebSocket message may pass maxSizeRequest by and still be answered with a
# RequestError "limit" (RFC 8887 4.3.4) rather than a close 1009: enough for the message's
# own members ("@type", "id") around a request at the limit.
WS_SIZE_SLACK = 64 * 1024
# Seconds between keep-alive pings on a WebSocket, and for the pong: they find dead peers and
# keep proxies (nginx's proxy_read_timeout is 60 s) from cutting idle push connections.
WS_PING_INTERVAL = 30.0
WS_PING_TIMEOUT = 30.0
# How often the drain looks whether push streams are gone.
DRAIN_POLL_SECONDS = 0.05


def listeners(settings: Settings) -> list[socket.socket]:
    """Bound sockets of the API port and, unless disabled, the metrics port: one per worker
    (``GATEWAY_METRICS_PORT + i`` for worker ``i``, see gateway.workers)."""
    metrics = (
        [settings.metrics_port + i for i in range(settings.workers)]
        if settings.metrics_port
        else []
    )
    ports = [settings.port, *metrics]
    sockets: list[socket.socket] = []
    try:
        for port in ports:
            sockets.append(_listen(settings.host, port))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _listen(host: str, port: int) -> socket.socket:
    host = host.removeprefix("[").removesuffix("]")
    # create_server sets SO_REUSEADDR, so a restarted gateway binds while old sockets linger.
    if host == "::" and socket.has_dualstack_ipv6():
        # Every address of both families: create_server would otherwise set IPV6_V6ONLY, and
        # IPv4 clients (and the image's HEALTHCHECK on 127.0.0.1) would be refused.
        return socket.create_server(
            (host, port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=BACKLOG
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


def server(settings: Settings, app: FastAPI) -> uvicorn.Server:
    """A uvicorn server for ``app`` (made by :func:`gateway.app.create_app`)."""
    metrics: Metrics = app.state.metrics
    edge = EdgeLimits(
        head_timeout=settings.http_head_timeout_seconds,
        body_timeout=settings.http_body_timeout_seconds,
        # A refused body is drained up to twice the largest body the gateway accepts.
        drain_octets=2 * max(settings.max_size_request, settings.max_size_upload),
        on_cut=metrics.http_cut,
    )
    config = uvicorn.Config(
        entry(app, settings),
        interface="asgi3",
        http=protocol_class(edge),
        ws=ws_protocol_class(),
        ws_max_size=settings.max_size_request + WS_SIZE_SLACK,
        ws_ping_interval=WS_PING_INTERVAL,
        ws_ping_timeout=WS_PING_TIMEOUT,
        ws_per_message_deflate=True,
        log_config=None,
        access_log=False,  # the app writes its own access log (gateway.logs)
        proxy_headers=False,
        server_header=False,
        lifespan="on",
        backlog=BACKLOG,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
    )
    return GatewayServer(config, app, settings.push_drain_seconds)


class GatewayServer(uvicorn.Server):
    """uvicorn's server, whose shutdown drains push streams first (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_seconds: float) -> None:
        super().__init__(config)
        self._app = app
        self._drain_seconds = drain_seconds

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Stop accepting first, so nothing new arrives while the streams end.
        for server in self.servers:
            server.close()
        await self._drain()
        await super().shutdown(sockets)

    async def _drain(self) -> None:
        services = getattr(self._app.state, "services", None)
        sockets: WebSocketEndpoint | None = getattr(self._app.state, "websockets", None)
        if services is None or sockets is None:
            return  # start-up did not finish: nothing to drain
        services.push.drain()
        sockets.drain()
        deadline = time.monotonic() + self._drain_seconds
        while services.push.local_accounts() or sockets.open:
            if time.monotonic() >= deadline:
                log.warning(
                    "push drain: %d WebSocket(s) still open after %.1f s; the shutdown closes them",
                    sockets.open,
                    self._drain_seconds,
                )
                return
            await asyncio.sleep(DRAIN_POLL_SECONDS)


def run(settings: Settings, sockets: list[socket.socket]) -> int:
    """Serve on ``sockets`` (see :func:`listeners`) until SIGTERM or SIGINT, then shut down
    gracefully; with ``GATEWAY_WORKERS`` above 1, in that many forked worker processes
    (gateway.workers). Returns the exit status."""
    if settings.workers == 1:
        serve(settings, sockets)
        return 0
    api, *metrics = sockets

    def worker(index: int, own: list[socket.socket]) -> None:
        port = settings.metrics_port + index if settings.metrics_port else 0
        serve(settings.model_copy(update={"metrics_port": port}), own)

    return Supervisor(settings.workers, api, metrics, worker).run()


def serve(settings: Settings, sockets: list[socket.socket]) -> None:
    """One process serving on ``sockets``: the API's, then its metrics port's if any."""
    server(settings, create_app(settings)).run(sockets=sockets)
