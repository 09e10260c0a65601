"""Serving the app with uvicorn: the API and metrics ports, and a graceful shutdown.

One uvicorn server listens on both ports (the metrics middleware tells them apart), so a single
shutdown covers both. On SIGTERM or SIGINT uvicorn stops accepting at once, closes idle
keep-alive connections, lets requests in flight finish for up to
``GATEWAY_SHUTDOWN_TIMEOUT_SECONDS`` and cancels what is left; the app's lifespan then LOGOUTs
every upstream connection and closes Redis. The timeout must be shorter than the pod's grace
period, or the kubelet's SIGKILL cuts the requests and the LOGOUTs short.

Connections are served by :mod:`gateway.http_protocol` (uvicorn's httptools protocol with
deadlines for the request head and body, a bound on the head, and a bounded drain of a body
answered unread), which also lets a shutdown end connections that trickle.
"""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from gateway.app import create_app
from gateway.config import Settings
from gateway.http_protocol import EdgeLimits, protocol_class
from gateway.metrics import Metrics

# Connections the kernel queues before the gateway accepts them (uvicorn's own default).
BACKLOG = 2048


def listeners(settings: Settings) -> list[socket.socket]:
    """Bound sockets of the API port and, unless disabled, the metrics port."""
    ports = [settings.port] + ([settings.metrics_port] if settings.metrics_port else [])
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
        app,
        http=protocol_class(edge),
        log_config=None,
        access_log=False,  # the app writes its own access log (gateway.logs)
        proxy_headers=False,
        server_header=False,
        lifespan="on",
        backlog=BACKLOG,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
    )
    return uvicorn.Server(config)


def run(settings: Settings, sockets: list[socket.socket]) -> None:
    """Serve on ``sockets`` (see :func:`listeners`) until SIGTERM or SIGINT, then shut down
    gracefully."""
    server(settings, create_app(settings)).run(sockets=sockets)
