"""Latency and bytes of the core HTTP surface, on loopback against real Dovecot and Redis.

The gateway runs as its own process (``python -m gateway serve``), as in production, so the
client's work is not counted as the server's. Prints, per scenario: median and p90 latency,
upstream logins per request (counted in Dovecot's own log), and the bytes the client received
(status line, headers and body). Scenarios:

* session, credentials cached: GET /jmap/session while the credential check is remembered;
* session, no cache: every request checks the password with an upstream LOGIN;
* Core/echo: POST /jmap/api/ with one Core/echo call (auth cached);
* readiness, cached: GET /readyz while its last check is fresh (GATEWAY_READY_CACHE_SECONDS);
* readiness, every probe checks: GET /readyz with the cache off (a Redis PING and an upstream
  connection, greeting and LOGOUT each time; counted as upstream connections without login);
* metrics scrape: GET /metrics on the metrics port after the other requests of its run.

Run: .venv/bin/python -m bench.core_latency [--requests 300]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import h11

from bench.servers import local_servers
from tests.servers import Dovecot, RedisServer, free_ports, wait_for_port

ECHO = json.dumps(
    {"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Core/echo", {"ping": 1}, "c"]]}
).encode()


class Client:
    """A minimal keep-alive HTTP/1.1 client (h11 over a blocking socket).

    httpx costs about 2 ms per request on the 2-core benchmark machine, more than the server's
    own work; this client costs tens of microseconds, so the figures are the gateway's.
    """

    def __init__(self, port: int, auth: tuple[str, str]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = h11.Connection(h11.CLIENT)
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        self.headers = [("host", "127.0.0.1"), ("authorization", f"Basic {token}")]
        self.last_body = b""
        self.last_headers: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, int]:
        """Send one request; returns the status and the octets received."""
        headers = [*self.headers, ("content-length", str(len(body)))]
        if body:
            headers.append(("content-type", "application/json"))
        data = self.conn.send(h11.Request(method=method, target=path, headers=headers))
        data += self.conn.send(h11.Data(data=body)) if body else b""
        data += self.conn.send(h11.EndOfMessage())
        self.sock.sendall(data)
        received, status, body = 0, 0, bytearray()
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                chunk = self.sock.recv(65536)
                received += len(chunk)
                self.conn.receive_data(chunk)
            elif isinstance(event, h11.Response):
                status = event.status_code
                self.last_headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.conn.start_next_cycle()
                self.last_body = bytes(body)
                return status, received

    def close(self) -> None:
        self.sock.close()


SESSION = ("GET", "/jmap/session", b"")
API = ("POST", "/jmap/api/", ECHO)
READY = ("GET", "/readyz", b"")
METRICS = ("GET", "/metrics", b"")


def dovecot_logins(dovecot: Dovecot) -> int:
    """Upstream connections so far: logged in, and ended before any login (probes)."""
    log = (dovecot.root / "log" / "dovecot.log").read_text()
    return log.count("imap-login: Info: Login:") + log.count("(no auth attempts")


def scenario(
    name: str,
    call: tuple[str, str, bytes],
    dovecot: Dovecot,
    redis: RedisServer,
    requests: int,
    **settings: str,
) -> dict[str, Any]:
    port, metrics_port = free_ports(2)
    env = {
        "GATEWAY_IMAP_URL": dovecot.url,
        "GATEWAY_REDIS_URL": redis.url,
        "GATEWAY_PORT": str(port),
        "GATEWAY_METRICS_PORT": str(metrics_port),
        "GATEWAY_LOG_LEVEL": "warning",
        "PATH": os.environ.get("PATH", ""),
        **{f"GATEWAY_{key.upper()}": value for key, value in settings.items()},
    }
    server = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env)
    try:
        wait_for_port(port)
        auth = ("alice", dovecot.users["alice"])
        if call is METRICS:
            # Something to report: the other scenarios' kinds of request, once each.
            api = Client(port, auth)
            for other in (SESSION, API, READY):
                api.request(*other)
            api.close()
        client = Client(metrics_port if call is METRICS else port, auth)
        client.request(*call)  # warm up: first login, connection pool, HTTP keep-alive
        logins_before = dovecot_logins(dovecot)
        times, sizes = [], []
        for _ in range(requests):
            started = time.perf_counter()
            status, received = client.request(*call)
            times.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise RuntimeError(f"{name}: HTTP {status}")
            sizes.append(received)
        logins = dovecot_logins(dovecot) - logins_before
        client.close()
    finally:
        server.terminate()
        server.wait(10)
    times.sort()
    return {
        "scenario": name,
        "median_ms": round(statistics.median(times), 2),
        "p90_ms": round(times[int(len(times) * 0.9)], 2),
        "upstream_logins_per_request": round(logins / requests, 2),
        "bytes_to_client": round(statistics.median(sizes)),
    }


def main(requests: int) -> None:
    with local_servers() as (dovecot, redis):
        rows = [
            scenario("session, credentials cached", SESSION, dovecot, redis, requests),
            scenario(
                "session, no credential cache",
                SESSION,
                dovecot,
                redis,
                requests,
                auth_cache_seconds="0",
            ),
            scenario("Core/echo, credentials cached", API, dovecot, redis, requests),
            scenario("readiness, cached", READY, dovecot, redis, requests),
            scenario(
                "readiness, every probe checks",
                READY,
                dovecot,
                redis,
                requests,
                ready_cache_seconds="0",
            ),
            scenario("metrics scrape", METRICS, dovecot, redis, requests),
        ]
    print(f"{'scenario':32} {'median ms':>10} {'p90 ms':>8} {'upstream/req':>12} {'bytes':>7}")
    for row in rows:
        print(
            f"{row['scenario']:32} {row['median_ms']:>10} {row['p90_ms']:>8} "
            f"{row['upstream_logins_per_request']:>12} {row['bytes_to_client']:>7}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    main(parser.parse_args().requests)
