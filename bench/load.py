"""Throughput under load: the warm "open INBOX" request from many keep-alive clients at once.

A gateway PROCESS (``python -m gateway serve``, as in production; ``--workers N`` sets
``GATEWAY_WORKERS``) in front of a seeded INBOX (bench.seed, 10,000 messages by default) and a
real Redis. Each client is a thread with the minimal keep-alive HTTP/1.1 client of
bench.core_latency, sending one POST with ``Email/query`` (inMailbox INBOX, receivedAt newest
first, limit 50) and ``Email/get`` of ``#ids`` with the list properties, for a fixed time, at
1, 8 and 64 clients. Printed per run:

* requests/s, p50 and p99 latency (measured while the machine may be shared: compare rows of
  one run, not runs);
* CPU seconds per request of the gateway process tree (from /proc: every worker counted), of
  Dovecot's processes, of Redis (INFO cpu) and of this load generator itself (it must not be
  the bottleneck: its share is printed beside the gateway's);
* Redis commands per request (INFO commandstats delta) and Redis round trips per request (the
  gateway's own count: the redis command-duration histogram on its metrics port, one
  observation per round trip);

and the overload case: 64 and 128 clients of ONE user that ignore Retry-After and resend at
once, under the default ``maxConcurrentRequests`` (128 is more than the slots and the wait
queue hold, so some are refused): useful requests/s (200 with method responses),
rejections/s, Redis commands per rejection and the longest any client waited for its first
success (starvation: "never" if one had none).

The throughput runs raise ``GATEWAY_MAX_CONCURRENT_REQUESTS`` to the client count so they
measure the serving path, not admission; the overload run keeps the default.

Run: .venv/bin/python -m bench.load [--count 10000] [--seconds 10] [--clients 1,8,64]
     [--overload-clients 64,128] [--workers 1] [--before /path/to/a/checkout/of/main]
Profile: .venv/bin/python -m bench.load --profile /tmp/gateway.prof (cProfile, 8 clients)
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.core_latency import Client
from bench.seed import seed_inbox
from bench.servers import local_servers
from tests.servers import Dovecot, RedisServer, free_ports, wait_for_port

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
LIST_PROPERTIES = ["threadId", "mailboxIds", "from", "subject", "receivedAt", "keywords", "preview"]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_HISTOGRAM_COUNT = re.compile(
    rb"^jmap_gateway_redis_command_duration_seconds_count\{[^}]*\} ([0-9.e+]+)$", re.M
)


# The gateway's main under cProfile, which SIGUSR1 starts (after the first sync and warm-up).
# uvicorn raises SIGTERM again once it has shut down, with the handler it found: this one,
# which ends the process by SystemExit, so the file is written.
PROFILED = """
import cProfile, signal, sys
from gateway.__main__ import main
def stop(signum, frame):
    raise SystemExit(0)
signal.signal(signal.SIGTERM, stop)
profile = cProfile.Profile()
signal.signal(signal.SIGUSR1, lambda signum, frame: profile.enable())
try:
    main(["serve"])
finally:
    profile.disable()
    profile.dump_stats({path!r})
"""


def open_inbox(account: str, inbox: str) -> bytes:
    """The warm list screen: the newest 50 of INBOX and their list properties."""
    return json.dumps(
        {
            "using": USING,
            "methodCalls": [
                [
                    "Email/query",
                    {
                        "accountId": account,
                        "filter": {"inMailbox": inbox},
                        "sort": [{"property": "receivedAt", "isAscending": False}],
                        "limit": 50,
                    },
                    "q",
                ],
                [
                    "Email/get",
                    {
                        "accountId": account,
                        "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                        "properties": LIST_PROPERTIES,
                    },
                    "g",
                ],
            ],
        }
    ).encode()


def useful(status: int, body: bytes) -> bool:
    """A 200 whose Email/get listed emails (not a method error)."""
    return status == 200 and b'"Email/get"' in body and b'"list"' in body


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and every live descendant, from /proc."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        # utime, stime, and the waited-for children's cutime, cstime (restarted workers).
        ticks[pid] = sum(int(value) for value in fields[11:15])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo += children.get(pid, [])
    return total / CLOCK_TICKS


def dovecot_master(dovecot: Dovecot) -> int:
    return int(dovecot.pidfile.read_text().strip())


@dataclass
class Counters:
    """What the servers had done at one moment."""

    gateway_cpu: float
    dovecot_cpu: float
    redis_cpu: float
    redis_calls: dict[str, int]
    round_trips: float
    generator_cpu: float = field(default_factory=time.process_time)


class Servers:
    """The gateway process and what it talks to, with their counters."""

    def __init__(
        self,
        dovecot: Dovecot,
        store: RedisServer,
        gateway: subprocess.Popen[bytes],
        api_port: int,
        metrics_ports: list[int],
    ) -> None:
        self.dovecot = dovecot
        self.redis = redis.Redis.from_url(store.url)
        self.gateway = gateway
        self.api_port = api_port
        self.metrics_ports = metrics_ports

    def counters(self) -> Counters:
        cpu = self.redis.info("cpu")
        stats = self.redis.info("commandstats")
        return Counters(
            gateway_cpu=tree_cpu(self.gateway.pid),
            dovecot_cpu=tree_cpu(dovecot_master(self.dovecot)),
            redis_cpu=float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            redis_calls={name: int(value["calls"]) for name, value in stats.items()},
            round_trips=self.round_trips(),
        )

    def round_trips(self) -> float:
        """Redis round trips the gateway counted (every worker's metrics endpoint)."""
        total = 0.0
        for port in self.metrics_ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as got:
                total += sum(float(v) for v in _HISTOGRAM_COUNT.findall(got.read()))
        return total


def redis_commands(before: Counters, after: Counters) -> int:
    """Commands Redis ran between the two, without the benchmark's own INFO calls."""
    total = 0
    for name, calls in after.redis_calls.items():
        if name != "cmdstat_info":
            total += calls - before.redis_calls.get(name, 0)
    return total


@dataclass
class Run:
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    useful: int = 0
    rejected: int = 0
    other: int = 0
    first_success: list[float | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def drive(port: int, auth: tuple[str, str], body: bytes, run: Run) -> None:
    """``run.clients`` threads, each on its own keep-alive connection, sending ``body`` back
    to back (ignoring Retry-After) for ``run.seconds``."""
    start = threading.Barrier(run.clients + 1)
    clients = [Client(port, auth) for _ in range(run.clients)]
    run.first_success = [None] * run.clients

    def loop(index: int, client: Client) -> None:
        start.wait()
        began = time.perf_counter()
        deadline = began + run.seconds
        times: list[float] = []
        counts = [0, 0, 0]
        while (now := time.perf_counter()) < deadline:
            status, _ = client.request("POST", "/jmap/api/", body)
            done = time.perf_counter()
            if useful(status, client.last_body):
                times.append(done - now)
                counts[0] += 1
                if run.first_success[index] is None:
                    run.first_success[index] = done - began
            elif status == 429:
                counts[1] += 1
            else:
                counts[2] += 1
        with run.lock:
            run.latencies += times
            run.useful += counts[0]
            run.rejected += counts[1]
            run.other += counts[2]

    threads = [
        threading.Thread(target=loop, args=(i, c), daemon=True) for i, c in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()


@contextmanager
def gateway_process(
    dovecot: Dovecot,
    store: RedisServer,
    workers: int,
    profile: str | None = None,
    tree: str | None = None,
    **settings: str,
) -> Iterator[Servers]:
    port, metrics_port = free_ports(2)
    env = {
        "GATEWAY_IMAP_URL": dovecot.url,
        "GATEWAY_REDIS_URL": store.url,
        "GATEWAY_PORT": str(port),
        "GATEWAY_METRICS_PORT": str(metrics_port),
        "GATEWAY_LOG_LEVEL": "warning",
        # As in production (README: set it): unset, every request reads the shared secret
        # from Redis, one more round trip.
        "GATEWAY_SECRET": "load-benchmark-secret-0123456789",
        "GATEWAY_WORKERS": str(workers),
        "PATH": os.environ.get("PATH", ""),
        **{f"GATEWAY_{key.upper()}": value for key, value in settings.items()},
    }
    if workers == 1:
        del env["GATEWAY_WORKERS"]  # also runs on a tree without the setting
    command = ["-m", "gateway", "serve"]
    if profile:
        command = ["-c", PROFILED.format(path=profile)]
    if tree:
        env["PYTHONPATH"] = tree  # the gateway package of that checkout
    gateway = subprocess.Popen([sys.executable, *command], env=env, cwd=tree)
    try:
        wait_for_port(port, 30)
        # With several workers, each serves metrics on its own port after the first.
        ports = [metrics_port + i for i in range(workers)]
        for extra in ports[1:]:
            wait_for_port(extra, 30)
        yield Servers(dovecot, store, gateway, port, ports)
    finally:
        gateway.terminate()
        gateway.wait(30)


def warm_up(port: int, auth: tuple[str, str]) -> bytes:
    """The account's first requests (its first sync); returns the open-INBOX body."""
    client = Client(port, auth)
    client.request("GET", "/jmap/session")
    account = json.loads(client.last_body)["primaryAccounts"]["urn:ietf:params:jmap:mail"]
    query = {
        "using": USING,
        "methodCalls": [
            ["Mailbox/query", {"accountId": account, "filter": {"role": "inbox"}}, "m"]
        ],
    }
    status, _ = client.request("POST", "/jmap/api/", json.dumps(query).encode())
    assert status == 200, client.last_body[:300]
    inbox = json.loads(client.last_body)["methodResponses"][0][1]["ids"][0]
    body = open_inbox(account, inbox)
    for _ in range(20):  # first sync, then caches
        status, _ = client.request("POST", "/jmap/api/", body)
        assert useful(status, client.last_body), client.last_body[:300]
    client.close()
    return body


def measure(
    servers: Servers, auth: tuple[str, str], body: bytes, clients: int, seconds: float
) -> dict[str, Any]:
    port: int = servers.api_port
    run = Run(clients, seconds)
    before = servers.counters()
    started = time.perf_counter()
    drive(port, auth, body, run)
    elapsed = time.perf_counter() - started
    after = servers.counters()
    answered = max(1, run.useful + run.rejected + run.other)
    times = sorted(run.latencies) or [float("nan")]
    waits = [w for w in run.first_success]
    return {
        "clients": clients,
        "rps": run.useful / elapsed,
        "rejected_ps": run.rejected / elapsed,
        "other": run.other,
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))] * 1000,
        "gw_cpu_ms": (after.gateway_cpu - before.gateway_cpu) / answered * 1000,
        "gw_cores": (after.gateway_cpu - before.gateway_cpu) / elapsed,
        "dovecot_cores": (after.dovecot_cpu - before.dovecot_cpu) / elapsed,
        "redis_cores": (after.redis_cpu - before.redis_cpu) / elapsed,
        "redis_cpu_us": (after.redis_cpu - before.redis_cpu) / answered * 1e6,
        "generator_cores": (after.generator_cpu - before.generator_cpu) / elapsed,
        "redis_cmds": redis_commands(before, after) / answered,
        "round_trips": (after.round_trips - before.round_trips) / answered,
        "starved": sum(1 for w in waits if w is None),
        "longest_first_wait_s": max((w for w in waits if w is not None), default=float("nan")),
    }


def profiled(count: int, seconds: float, clients: int, path: str) -> None:
    """The gateway under cProfile while ``clients`` send the warm request; prints where its
    CPU time goes (the profiler itself slows the gateway: compare shares, not rates)."""
    with local_servers() as (dovecot, store):
        user = dovecot.fresh_user()
        auth = (user, dovecot.users[user])
        seed_inbox("127.0.0.1", dovecot.imap_port, user, auth[1], count)
        limit = str(clients)
        with gateway_process(
            dovecot, store, 1, profile=path, max_concurrent_requests=limit
        ) as servers:
            body = warm_up(servers.api_port, auth)
            servers.gateway.send_signal(signal.SIGUSR1)
            row = measure(servers, auth, body, clients, seconds)
    print(f"{row['rps']:.1f} requests/s under the profiler, {clients} clients")
    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)


def run_tree(
    dovecot: Dovecot,
    store: RedisServer,
    auth: tuple[str, str],
    tree: str | None,
    client_counts: list[int],
    overload: list[int],
    seconds: float,
    workers: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every row for the gateway of ``tree`` (None: this checkout), from an empty Redis."""
    redis.Redis.from_url(store.url).flushall()
    rows, floods = [], []
    limit = str(max(client_counts))
    with gateway_process(
        dovecot, store, workers, tree=tree, max_concurrent_requests=limit
    ) as servers:
        body = warm_up(servers.api_port, auth)
        for clients in client_counts:
            rows.append(measure(servers, auth, body, clients, seconds))
            print(f"  {clients} clients done", flush=True)
    with gateway_process(dovecot, store, workers, tree=tree) as servers:
        warm_up(servers.api_port, auth)
        for clients in overload:
            floods.append(measure(servers, auth, body, clients, seconds))
    return rows, floods


def main(
    count: int,
    seconds: float,
    client_counts: list[int],
    overload: list[int],
    workers: int,
    before: str | None,
) -> None:
    trees: list[tuple[str, str | None]] = [("this checkout", None)]
    if before:
        trees.insert(0, (f"before ({before})", before))
    results = []
    with local_servers() as (dovecot, store):
        user = dovecot.fresh_user()
        auth = (user, dovecot.users[user])
        started = time.perf_counter()
        seed_inbox("127.0.0.1", dovecot.imap_port, user, auth[1], count)
        print(f"seeded {count} messages in {time.perf_counter() - started:.1f} s", flush=True)
        for label, tree in trees:
            print(f"{label}:", flush=True)
            run = run_tree(dovecot, store, auth, tree, client_counts, overload, seconds, workers)
            results.append((label, *run))
    for label, rows, floods in results:
        report(label, count, seconds, workers, rows, floods)


def report(
    label: str,
    count: int,
    seconds: float,
    workers: int,
    rows: list[dict[str, Any]],
    floods: list[dict[str, Any]],
) -> None:
    print(
        f"\n{label}: warm open INBOX ({count} messages), {workers} worker process(es), "
        f"{seconds:.0f} s per row, measured while the machine may be shared"
    )
    print(
        f"{'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'gw CPU ms/req':>13} "
        f"{'gw cores':>8} {'redis cmds/req':>14} {'round trips/req':>15} {'redis cores':>11} "
        f"{'redis CPU us/req':>16} {'dovecot cores':>13} {'loadgen cores':>13} {'errors':>6}"
    )
    for r in rows:
        print(
            f"{r['clients']:>7} {r['rps']:>8.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['gw_cpu_ms']:>13.2f} {r['gw_cores']:>8.2f} {r['redis_cmds']:>14.1f} "
            f"{r['round_trips']:>15.1f} {r['redis_cores']:>11.2f} {r['redis_cpu_us']:>16.0f} "
            f"{r['dovecot_cores']:>13.2f} {r['generator_cores']:>13.2f} "
            f"{r['other']:>6}"
        )
    print(f"{label}: overload, clients of ONE user ignoring Retry-After, default limits")
    print(
        f"{'clients':>7} {'useful req/s':>12} {'rejected/s':>10} {'redis cmds/answer':>17} "
        f"{'gw CPU ms/answer':>16} {'p99 ms':>7} {'never served':>12} {'longest first wait s':>20}"
    )
    for f in floods:
        print(
            f"{f['clients']:>7} {f['rps']:>12.1f} {f['rejected_ps']:>10.1f} "
            f"{f['redis_cmds']:>17.1f} {f['gw_cpu_ms']:>16.2f} {f['p99_ms']:>7.0f} "
            f"{f['starved']:>12} {f['longest_first_wait_s']:>20.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,8,64")
    parser.add_argument("--overload-clients", default="64,128")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--before",
        metavar="CHECKOUT",
        help="also run the gateway of another checkout (e.g. a worktree of main) first, "
        "against the same seeded servers, and print its tables beside this one's",
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="instead: profile one gateway at 8 clients into FILE"
    )
    args = parser.parse_args()
    if args.profile:
        profiled(args.count, args.seconds, 8, args.profile)
        sys.exit(0)
    main(
        args.count,
        args.seconds,
        [int(c) for c in args.clients.split(",") if c],
        [int(c) for c in args.overload_clients.split(",") if c],
        args.workers,
        args.before,
    )
