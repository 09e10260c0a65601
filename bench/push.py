"""Push (issue 15) on loopback against real Dovecot, Cyrus and Redis, the gateway as its own
process (``python -m gateway serve``), as in production. Prints three tables:

* **Idle push connections one replica holds**, EventSource and WebSocket (permessage-deflate
  negotiated) separately: the gateway process's RSS (``/proc/<pid>/status``) before and after
  the connections opened and idled, per connection; then again after every connection received
  one StateChange (an IMAP APPEND by another client). The clients run in processes of their own
  (a process may hold at most ``ulimit -n`` sockets), all on one account, the per-account
  listener limit raised for the run.
* **APPEND to StateChange**: the time from a plain ``imaplib`` APPEND into INBOX by another
  client to the WebSocket StateChange announcing a new Email state at a connected client,
  p50/p95 over ``--appends`` appends: Dovecot (NOTIFY in IDLE) and Cyrus (IDLE on INBOX).
* **Upstream connections per watched account**, cluster-wide: two gateway processes, a
  WebSocket listener on each for each of several accounts; the IMAP sessions each account
  holds, counted from Dovecot's own process titles (one ``imap`` process per session, named
  after its user), once the connections the logins left in the pools timed out.

Run: .venv/bin/python -m bench.push [--connections 10000] [--appends 50] [--clients 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.servers import local_cyrus, local_dovecot, local_redis
from tests.cyrus import Cyrus
from tests.gateways import GatewayProcess, gateways
from tests.servers import Dovecot

MAIL = "urn:ietf:params:jmap:mail"
# Connections a client process opens at once: more makes the gateway exceed its Redis
# client's 100 connections (redis-py raises MaxConnectionsError, the open gets 503).
OPEN_AT_ONCE = 20
# Generous bounds: nothing waits this long unless something is broken.
WAIT_SECONDS = 60.0
SETTLE_SECONDS = 3.0
MESSAGE = (
    b"From: bench@example.org\r\nTo: user@example.org\r\nSubject: push bench\r\n"
    b"Message-ID: <%s@example.org>\r\n\r\npush me\r\n"
)


# -- the client processes (python -m bench.push client ...) ---------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def open_eventsource(port: int, authorization: str) -> asyncio.StreamReader:
    """A raw EventSource request; returns once the initial ``state`` event arrived."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            "GET /jmap/eventsource/?types=*&closeafter=no&ping=0 HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nAuthorization: {authorization}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        body = await reader.read(4096)
        raise RuntimeError((head + body).decode(errors="replace"))
    await _next_event(reader)
    reader._bench_writer = writer  # type: ignore[attr-defined]  # keeps the transport alive
    return reader


async def _next_event(reader: asyncio.StreamReader) -> bytes:
    """The next SSE ``state`` event (chunked framing skipped over: lines are all we need)."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("stream ended")
        if line.startswith(b"event: state"):
            return line


async def open_websocket(port: int, authorization: str) -> ClientConnection:
    socket = await connect(
        f"ws://127.0.0.1:{port}/jmap/ws",
        subprotocols=["jmap"],  # type: ignore[list-item]
        additional_headers={"Authorization": authorization},
        compression="deflate",
        ping_interval=None,
        max_queue=4,
        open_timeout=WAIT_SECONDS,
    )
    extensions = (
        socket.response.headers.get("sec-websocket-extensions", "") if socket.response else ""
    )
    if "permessage-deflate" not in extensions:
        raise RuntimeError(f"deflate not negotiated: {extensions!r}")
    await socket.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
    return socket


async def _next_state_change(socket: ClientConnection) -> None:
    while json.loads(await socket.recv())["@type"] != "StateChange":
        pass


async def client(kind: str, port: int, count: int, authorization: str) -> None:
    """Open ``count`` connections, say ``ready``; on ``wait``, say ``got N`` once every
    connection received one more event; exit when stdin closes."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def one() -> Any:
        async with gate:
            if kind == "ws":
                return await open_websocket(port, authorization)
            return await open_eventsource(port, authorization)

    connections = await asyncio.gather(*(one() for _ in range(count)))
    print("ready", count, flush=True)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while command := (await stdin.readline()).strip():
        if command == b"wait":
            if kind == "ws":
                waits = [_next_state_change(c) for c in connections]
            else:
                waits = [_next_event(c) for c in connections]
            await asyncio.wait_for(asyncio.gather(*waits), WAIT_SECONDS)
            print("got", count, flush=True)


class ClientProcess:
    def __init__(self, kind: str, port: int, count: int, authorization: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.push", "client", kind, str(port), str(count)],
            env={**os.environ, "BENCH_AUTHORIZATION": authorization},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def expect(self, word: str) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        if not line.startswith(word):
            raise RuntimeError(f"client said {line!r}, not {word!r}")

    def tell(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- measurements ---------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def append(server: Dovecot | Cyrus, user: str) -> None:
    """One message into INBOX by another client: a plain imaplib session."""
    imap = server.client(user)
    try:
        message = MESSAGE % secrets.token_hex(8).encode()
        status, _ = imap.append("INBOX", None, None, message)
        if status != "OK":
            raise RuntimeError(f"APPEND: {status}")
    finally:
        imap.logout()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def held_connections(
    dovecot: Dovecot, redis_url: str, kind: str, connections: int, clients: int
) -> dict[str, Any]:
    user = dovecot.fresh_user()
    authorization = basic(user, dovecot.users[user])
    (gateway,) = gateways(
        1,
        imap_url=dovecot.url,
        redis_url=redis_url,
        nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        secret=secrets.token_hex(32),
        log_level="warning",
        push_max_connections=str(connections + 100),
        push_max_per_account=str(connections + 100),
    )
    await gateway.start()
    try:
        # Warm up: the code paths, the credential cache, the watcher and its upstream session.
        warm = ClientProcess(kind, gateway.port, 10, authorization)
        await asyncio.to_thread(warm.expect, "ready")
        warm.stop()
        await asyncio.sleep(SETTLE_SECONDS)
        before = rss_kib(gateway.pid)
        share = [connections // clients + (i < connections % clients) for i in range(clients)]
        started = time.perf_counter()
        processes = [ClientProcess(kind, gateway.port, n, authorization) for n in share]
        try:
            for process in processes:
                await asyncio.to_thread(process.expect, "ready")
            opened_seconds = time.perf_counter() - started
            await asyncio.sleep(SETTLE_SECONDS)
            idle = rss_kib(gateway.pid)
            listeners = metric(await gateway.metrics(), "jmap_gateway_push_listeners")
            for process in processes:
                process.tell("wait")
            await asyncio.to_thread(append, dovecot, user)
            for process in processes:
                await asyncio.to_thread(process.expect, "got")
            await asyncio.sleep(SETTLE_SECONDS)
            after_event = rss_kib(gateway.pid)
        finally:
            for process in processes:
                process.stop()
    finally:
        gateway.kill()
    return {
        "kind": "EventSource" if kind == "sse" else "WebSocket (deflate)",
        "connections": connections,
        "listeners": int(listeners),
        "open_s": round(opened_seconds, 1),
        "rss_before_mib": round(before / 1024, 1),
        "rss_idle_mib": round(idle / 1024, 1),
        "kib_per_idle": round((idle - before) / connections, 1),
        "kib_per_after_event": round((after_event - before) / connections, 1),
    }


async def email_state_change(socket: ClientConnection, account_id: str, old: str | None) -> str:
    """The next StateChange announcing an Email state of the account other than ``old``."""
    while True:
        message = json.loads(await socket.recv())
        if message["@type"] == "StateChange":
            state = message["changed"].get(account_id, {}).get("Email")
            if state is not None and state != old:
                return str(state)


async def latency(server: Dovecot | Cyrus, redis_url: str, appends: int) -> dict[str, Any]:
    user = server.fresh_user()
    authorization = basic(user, server.users[user])
    (gateway,) = gateways(1, imap_url=server.url, redis_url=redis_url, log_level="warning")
    await gateway.start()
    try:
        socket = await open_websocket(gateway.port, authorization)
        account_id = await _account_id(gateway, authorization)
        # The first APPEND also waits for the watcher to start.
        await asyncio.to_thread(append, server, user)
        state = await asyncio.wait_for(email_state_change(socket, account_id, None), WAIT_SECONDS)
        times = []
        for _ in range(appends):
            await asyncio.sleep(0.3)
            started = time.perf_counter()
            await asyncio.to_thread(append, server, user)
            state = await asyncio.wait_for(
                email_state_change(socket, account_id, state), WAIT_SECONDS
            )
            times.append((time.perf_counter() - started) * 1000)
        await socket.close()
    finally:
        gateway.kill()
    times.sort()
    return {
        "upstream": "Dovecot (NOTIFY)" if isinstance(server, Dovecot) else "Cyrus (IDLE)",
        "appends": appends,
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
        "max_ms": round(times[-1], 1),
    }


async def _account_id(gateway: GatewayProcess, authorization: str) -> str:
    async with httpx.AsyncClient(timeout=30) as http:
        session = await http.get(
            gateway.base_url + "/jmap/session", headers={"Authorization": authorization}
        )
        return str(session.json()["primaryAccounts"][MAIL])


def imap_sessions(dovecot: Dovecot, user: str) -> int:
    """Dovecot's IMAP sessions of ``user``: its ``imap`` processes, one per session, titled
    ``dovecot-<instance>/imap [user address]`` (verbose_proctitle)."""
    titles = subprocess.run(
        ["ps", "-eo", "args"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    prefix = f"dovecot-jg-test-{dovecot.imap_port}/imap [{user} "
    return sum(1 for title in titles if title.startswith(prefix))


async def connections_per_account(
    dovecot: Dovecot, redis_url: str, accounts: int
) -> dict[str, Any]:
    users = [dovecot.fresh_user() for _ in range(accounts)]
    replicas = gateways(
        2, imap_url=dovecot.url, redis_url=redis_url, log_level="warning", pool_idle_timeout="1"
    )
    await asyncio.gather(*(replica.start() for replica in replicas))
    sockets: list[ClientConnection] = []
    try:
        for user in users:
            authorization = basic(user, dovecot.users[user])
            account_id = await _account_id(replicas[0], authorization)
            pair = [await open_websocket(r.port, authorization) for r in replicas]
            sockets += pair
            await asyncio.to_thread(append, dovecot, user)
            for socket in pair:  # the watcher runs: both replicas' listeners hear the change
                await asyncio.wait_for(email_state_change(socket, account_id, None), WAIT_SECONDS)
        # The connections the logins left in the pools close after GATEWAY_POOL_IDLE_TIMEOUT.
        await asyncio.sleep(SETTLE_SECONDS + 2)
        counts = [imap_sessions(dovecot, user) for user in users]
        watched = [
            metric(await r.metrics(), "jmap_gateway_push_watched_accounts") for r in replicas
        ]
    finally:
        for socket in sockets:
            await socket.close()
        for replica in replicas:
            replica.kill()
    return {
        "accounts": accounts,
        "replicas": len(replicas),
        "listeners_per_account": 2,
        "sessions_min": min(counts),
        "sessions_max": max(counts),
        "watched_per_replica": "/".join(str(int(w)) for w in watched),
    }


# -- main -----------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> None:
    keys = list(rows[0])
    widths = [max(len(k), *(len(str(r[k])) for r in rows)) for k in keys]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[k]).ljust(w) for k, w in zip(keys, widths, strict=True)))
    print()


async def run(connections: int, appends: int, clients: int, parts: set[str]) -> None:
    with local_dovecot() as dovecot, local_redis() as redis:
        if "connections" in parts:
            rows = [
                await held_connections(dovecot, redis.url, kind, connections, clients)
                for kind in ("sse", "ws")
            ]
            table(rows)
        if "latency" in parts:
            rows = [await latency(dovecot, redis.url, appends)]
            with local_cyrus() as cyrus:
                rows.append(await latency(cyrus, redis.url, appends))
            table(rows)
        if "upstream" in parts:
            table([await connections_per_account(dovecot, redis.url, 5)])


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "client":
        kind, port, count = args[1], int(args[2]), int(args[3])
        asyncio.run(client(kind, port, count, os.environ["BENCH_AUTHORIZATION"]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--appends", type=int, default=50)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument(
        "--parts", default="connections,latency,upstream", help="comma list of the tables"
    )
    options = parser.parse_args(args)
    asyncio.run(
        run(options.connections, options.appends, options.clients, set(options.parts.split(",")))
    )


if __name__ == "__main__":
    main()
