"""Prometheus metrics of one gateway process, served on their own port.

Every label value comes from a small closed set: route templates, HTTP status codes, JMAP method
names the registry knows (anything else is "unknown"), JMAP error types, IMAP command verbs and
Redis command names. Account ids, user names, mailbox names and blob ids never become labels:
they would leak who uses the gateway to whoever reads the metrics, and grow without bound.

Each :class:`Metrics` has its own registry rather than prometheus-client's global one, so two
gateways in one process (the tests run several) never mix their figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from gateway.imap.pool import ImapPool

METRICS_PATH = "/metrics"
PREFIX = "jmap_gateway"

# Seconds. Redis answers in well under a millisecond on a healthy network; an IMAP round trip
# ranges from a NOOP to a SEARCH of a large folder.
REDIS_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
IMAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# An SMTP send: a session set-up (TLS, AUTH) and a message, up to the final reply timeout.
SMTP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 30.0, 60.0, 120.0)


class Metrics:
    """The process's instruments; also the observer the IMAP and Redis layers report to."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests by route template, HTTP method and status code",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time to answer an HTTP request (streamed downloads: until the last byte)",
            ["route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.http_in_flight = Gauge(
            f"{PREFIX}_http_requests_in_flight", "HTTP requests being answered", registry=r
        )
        self.http_cuts = Counter(
            f"{PREFIX}_http_connections_cut",
            "Connections the gateway closed on a client that was too slow or sent too much "
            '("head_timeout", "head_too_large", "body_timeout", "drain_limit")',
            ["reason"],
            registry=r,
        )
        self.http_abandoned = Counter(
            f"{PREFIX}_http_requests_abandoned",
            "API requests whose client went away while they ran: their work was cancelled",
            registry=r,
        )
        self.websockets_open = Gauge(
            f"{PREFIX}_websockets_open",
            "JMAP WebSockets (RFC 8887) accepted and not yet closed",
            registry=r,
        )
        self.websocket_closes = Counter(
            f"{PREFIX}_websocket_closes",
            'JMAP WebSockets the gateway closed, by why: "going_away" (shutdown), "binary" '
            '(a binary frame), "unauthorized" (credentials refused on a recheck), '
            '"token_expired"',
            ["reason"],
            registry=r,
        )
        self.jmap_calls = Counter(
            f"{PREFIX}_jmap_calls",
            'JMAP method calls by method and outcome ("ok" or the JMAP error type)',
            ["method", "outcome"],
            registry=r,
        )
        self.jmap_duration = Histogram(
            f"{PREFIX}_jmap_call_duration_seconds",
            "Time to run one JMAP method call",
            ["method"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.imap_commands = Counter(
            f"{PREFIX}_imap_commands",
            'Upstream IMAP commands by verb and outcome ("ok", "no", "bad" or how it failed)',
            ["command", "outcome"],
            registry=r,
        )
        self.imap_round_trip = Histogram(
            f"{PREFIX}_imap_round_trip_seconds",
            'Time from sending IMAP commands to their tagged answers ("PIPELINE": several '
            "commands sent together)",
            ["command"],
            buckets=IMAP_BUCKETS,
            registry=r,
        )
        self.imap_connects = Counter(
            f"{PREFIX}_imap_connects",
            "Attempts to open an upstream IMAP connection, by outcome",
            ["outcome"],
            registry=r,
        )
        self.smtp_commands = Counter(
            f"{PREFIX}_smtp_commands",
            'Upstream SMTP commands by command and reply class ("2xx".."5xx") or how they '
            'failed ("timeout", "connection_lost"); "." is the end of a message',
            ["command", "outcome"],
            registry=r,
        )
        self.smtp_connects = Counter(
            f"{PREFIX}_smtp_connects",
            "Attempts to open an SMTP session (greeting, TLS, EHLO, AUTH), by outcome",
            ["outcome"],
            registry=r,
        )
        self.smtp_transactions = Counter(
            f"{PREFIX}_smtp_transactions",
            'Messages handed to the SMTP server, by outcome ("sent", "partial": some '
            'recipients refused, "refused", "transient", "ambiguous": cut after the end of data)',
            ["outcome"],
            registry=r,
        )
        self.smtp_duration = Histogram(
            f"{PREFIX}_smtp_transaction_seconds",
            "Time to send one message over SMTP, session set-up included",
            buckets=SMTP_BUCKETS,
            registry=r,
        )
        self.delayed_sends = Counter(
            f"{PREFIX}_delayed_sends",
            "Held submissions this replica took from the schedule, by what came of them: "
            '"sent", "refused", "retry" (a transient failure, tried again later), "unknown" '
            '(the holder died after its final "."), "canceled", "lost", "done"',
            ["outcome"],
            registry=r,
        )
        self.push_watched = Gauge(
            f"{PREFIX}_push_watched_accounts",
            "Accounts this replica watches upstream for push (one IMAP connection each)",
            registry=r,
        )
        self.push_watch_signals = Counter(
            f"{PREFIX}_push_watch_signals",
            "Signs of an upstream change a watcher received in IDLE (each starts a catch-up, "
            "those within 100 ms sharing one)",
            registry=r,
        )
        self.push_watch_catchups = Counter(
            f"{PREFIX}_push_watch_catchups",
            'Catch-ups run by watchers, by outcome ("ok", "failed")',
            ["outcome"],
            registry=r,
        )
        self.push_watch_takeovers = Counter(
            f"{PREFIX}_push_watch_takeovers",
            "Watch leases this replica took: an account's first watcher, or a takeover from "
            "a replica that died or let go",
            registry=r,
        )
        self.webpush_deliveries = Counter(
            f"{PREFIX}_webpush_deliveries",
            "Pushes to push subscriptions (RFC 8620 7.2) this replica took from the due queue, "
            'by what came of them: "delivered" (2xx), "retry" (429, 5xx or unreachable: tried '
            'again later), "gave_up" (dropped after the last attempt), "gone" (404/410 or the '
            'subscription vanished: destroyed), "expired", "rejected" (another status: dropped), '
            '"refused" (the URL\'s host resolved to a refused address), "nothing" (nothing '
            "that may be sent)",
            ["outcome"],
            registry=r,
        )
        self.webpush_enqueue_failures = Counter(
            f"{PREFIX}_webpush_enqueue_failures",
            "Committed state changes not queued for push subscriptions (Redis refused, or the "
            "outbox overflowed): subscriptions hear of them with the account's next change",
            registry=r,
        )
        self.redis_duration = Histogram(
            f"{PREFIX}_redis_command_duration_seconds",
            'Redis round trips by command ("MULTI", "PIPELINE": one transaction or pipeline)',
            ["command"],
            buckets=REDIS_BUCKETS,
            registry=r,
        )
        self.redis_errors = Counter(
            f"{PREFIX}_redis_errors",
            "Redis round trips that failed, by command and kind of failure",
            ["command", "kind"],
            registry=r,
        )
        self.push_listeners = Gauge(
            f"{PREFIX}_push_listeners",
            "Push listeners (EventSource and WebSocket push) this replica holds",
            registry=r,
        )
        self.push_announcements = Counter(
            f"{PREFIX}_push_announcements",
            'Push announcements heard from Redis pub/sub, by kind ("changed", "released")',
            ["kind"],
            registry=r,
        )
        self.push_publish_failures = Counter(
            f"{PREFIX}_push_publish_failures",
            "State changes this replica could not announce (Redis refused the publish, or the "
            "outbox overflowed): listeners hear of them with the next change or resync",
            registry=r,
        )
        self.push_resyncs = Counter(
            f"{PREFIX}_push_resyncs",
            "Pub/sub reconnects after which every local listener was resynced",
            registry=r,
        )
        self.ready = Gauge(
            f"{PREFIX}_ready",
            "1 while the last readiness check found Redis and the upstream reachable",
            registry=r,
        )
        self._pool = _PoolCollector()
        r.register(self._pool)
        self._asgi = make_asgi_app(r)

    def watch_pool(self, pool: ImapPool) -> None:
        """Report the pool's sizes, read when scraped (nothing to keep in step)."""
        self._pool.pool = pool

    # -- the HTTP and JMAP surface --------------------------------------------------------------

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_duration.labels(route).observe(seconds)

    def http_cut(self, reason: str) -> None:
        """gateway.http_protocol cut a connection; ``reason`` is one of its closed set."""
        self.http_cuts.labels(reason).inc()

    def call(self, method: str, outcome: str, seconds: float) -> None:
        self.jmap_calls.labels(method, outcome).inc()
        self.jmap_duration.labels(method).observe(seconds)

    def delayed_send(self, outcome: str) -> None:
        self.delayed_sends.labels(outcome).inc()

    # -- push watchers (gateway.push.watch) -----------------------------------------------

    def watched_accounts(self, count: int) -> None:
        self.push_watched.set(count)

    def watch_signal(self) -> None:
        self.push_watch_signals.inc()

    def watch_catch_up(self, outcome: str) -> None:
        self.push_watch_catchups.labels(outcome).inc()

    def watch_taken(self) -> None:
        self.push_watch_takeovers.inc()

    # -- push subscriptions (gateway.push.deliveries, gateway.push.enqueue) -------------------

    def webpush_outcome(self, outcome: str) -> None:
        self.webpush_deliveries.labels(outcome).inc()

    def webpush_enqueue_failed(self) -> None:
        self.webpush_enqueue_failures.inc()

    # -- gateway.smtp.observer.SmtpObserver ---------------------------------------------------

    def smtp_connect(self, outcome: str) -> None:
        self.smtp_connects.labels(outcome).inc()

    def smtp_command(self, command: str, outcome: str) -> None:
        self.smtp_commands.labels(command, outcome).inc()

    def smtp_transaction(self, outcome: str, seconds: float) -> None:
        self.smtp_transactions.labels(outcome).inc()
        self.smtp_duration.observe(seconds)

    # -- gateway.imap.observer.ImapObserver ---------------------------------------------------

    def command(self, verb: str, outcome: str) -> None:
        self.imap_commands.labels(verb, outcome).inc()

    def round_trip(self, name: str, seconds: float) -> None:
        self.imap_round_trip.labels(name).observe(seconds)

    def connect(self, outcome: str) -> None:
        self.imap_connects.labels(outcome).inc()

    # -- gateway.cache.timed.RedisObserver ------------------------------------------------------

    def redis(self, command: str, seconds: float, failure: str | None) -> None:
        self.redis_duration.labels(command).observe(seconds)
        if failure is not None:
            self.redis_errors.labels(command, failure).inc()

    # -- exposition -----------------------------------------------------------------------------

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a request that reached the metrics port: /metrics, or 404."""
        if scope["path"] == METRICS_PATH and scope["method"] in ("GET", "HEAD"):
            await self._asgi(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 404,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": b"Not Found: metrics are at /metrics\n"})


class MetricsPort:
    """ASGI middleware sending requests that arrived on the metrics port to the metrics.

    One uvicorn server listens on both ports (so one graceful shutdown covers both); the port a
    connection was accepted on, not a path, decides what it reaches, so the metrics are never
    served on the public API port, and the API never on the metrics port: a WebSocket
    handshake there is refused (403) before it reaches the app.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, port: int) -> None:
        self.app = app
        self.metrics = metrics
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        metrics_port = bool(self.port and server is not None and server[1] == self.port)
        if metrics_port and scope["type"] == "http":
            await self.metrics.serve(scope, receive, send)
        elif metrics_port and scope["type"] == "websocket":
            await receive()  # websocket.connect
            # Closing before accepting refuses the handshake: uvicorn answers 403.
            await send({"type": "websocket.close", "code": 1008})
        else:
            await self.app(scope, receive, send)


class _PoolCollector(Collector):
    """Reads the pool when scraped; reports nothing before the pool exists."""

    pool: ImapPool | None = None

    def collect(self) -> Iterator[Metric]:
        if self.pool is None:
            return
        stats = self.pool.stats()
        connections = GaugeMetricFamily(
            f"{PREFIX}_imap_pool_connections",
            "Upstream IMAP connections held, by state (busy includes those being opened; watch: "
            "watchers' dedicated IDLE connections, outside the pool's ceiling)",
            labels=["state"],
        )
        connections.add_metric(["idle"], stats.idle)
        connections.add_metric(["busy"], stats.total - stats.idle)
        connections.add_metric(["watch"], stats.watch)
        yield connections
        yield GaugeMetricFamily(
            f"{PREFIX}_imap_pool_max_connections",
            "Ceiling of upstream IMAP connections (GATEWAY_POOL_MAX_TOTAL)",
            value=self.pool.max_total,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_imap_pool_users",
            "Users with a pool of upstream connections",
            value=stats.users,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_imap_logins",
            "Upstream connections opened and logged in since start",
            value=stats.opened,
        )
