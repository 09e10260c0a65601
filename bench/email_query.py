"""Email/query on INBOXes of 1,000 to 100,000 messages: the list window and a text search.

For each size a fresh Dovecot user's INBOX is seeded (bench.seed, in a child process so that
the generated messages do not stay in this process's memory) and left to settle
(bench.imap_baseline.settle: Maildir's cur/ no longer "recently changed"). One Dovecot, one
Redis and one gateway serve the whole run. Figures printed, one table each, a row per size:

* the account's first call (Email/get with no ids: folders listed, INBOX indexed): wall time,
  upstream commands, the Redis memory the account's index then takes (MEMORY USAGE of its
  keys, as bench.email_get), and this process's peak RSS so far (the gateway runs in it);
* the list window, ``Email/query`` of the INBOX newest first, limit 50, with the total: median
  and p90 latency over the warm requests, upstream commands and round trips per request (the
  most any request took), bytes to the client. The gateway answers it from the folder's
  by-date sorted set in Redis, so none of these should grow with the INBOX;
* a text search, ``Email/query`` of the INBOX with a ``subject`` condition (the gateway filters
  its index and asks the upstream's UID SEARCH for the text), beside the same
  ``UID SEARCH SUBJECT`` sent straight to Dovecot on a connection already logged in with INBOX
  selected: median latency of each over the same number of runs (interleaved, after one
  untimed run of each), and the ratio gateway/direct.

* the filtered queries the query structures answer (gateway.cache.query_index): unread in the
  INBOX, flagged in the INBOX, flagged anywhere, the INBOX by size both ways, the INBOX with
  collapsed threads; limit 50 and the total, newest first unless sorted by size. Per query:
  median and p90 over the warm requests, Redis round trips per request (the most of any),
  beside the general path's median for the same query (its filter ANDed with ``minSize: 0``,
  which the structures do not answer, so the records are read and filtered in Python, as
  before them; fewer runs: ``--general-requests``), and the ratio of the median at the largest
  size to the smallest's. The first size query of a folder builds its size order (timed apart);
* the Redis octets per email the query structures take (MEMORY USAGE of their keys).

The gateway runs in this process (in a thread with its own event loop) so its upstream command
counter can be read, and its Redis round trips counted (each packed send of redis-py's asyncio
connection: a pipeline or a script is one); the client is the minimal h11 client of
bench.core_latency.

Run: .venv/bin/python -m bench.email_query [--sizes 1000,10000,100000] [--requests 50]
     [--general-requests 5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import redis
import uvicorn
from redis.asyncio.connection import AbstractConnection

from bench.core_latency import Client
from bench.email_get import call, redis_bytes
from bench.imap_baseline import settle
from bench.mailbox_get import serve_in_thread
from bench.seed import Wire, seed_inbox
from bench.servers import local_servers
from gateway.app import create_app
from gateway.imap.pool import ImapPool
from tests.conftest import gateway_settings
from tests.servers import LOOPBACK, Dovecot, wait_for_port

# "Trip to Lisbon" is one of bench.seed's 18 topics: its messages and their "Re:" replies,
# about 5% of the INBOX.
SUBJECT_WORD = "Lisbon"
WINDOW = 50


@dataclass
class Row:
    size: int
    seed_s: float = 0.0
    first_s: float = 0.0
    first_commands: int = 0
    redis_mb: float = 0.0
    peak_rss_mb: float = 0.0
    window_median: float = 0.0
    window_p90: float = 0.0
    window_commands: int = 0
    window_trips: int = 0
    window_bytes: int = 0
    matches: int = 0
    search_first: float = 0.0
    search_median: float = 0.0
    search_commands: int = 0
    search_bytes: int = 0
    direct_median: float = 0.0
    filtered: list[Filtered] = field(default_factory=list)
    structure_octets: dict[str, int] = field(default_factory=dict)


@dataclass
class Filtered:
    """One filtered query's figures at one size."""

    name: str
    total: int
    first_ms: float
    median: float
    p90: float
    redis_trips: int
    general_median: float


class RedisTrips:
    """Counts the gateway's Redis round trips: every packed send of an asyncio connection."""

    count = 0

    @classmethod
    def install(cls) -> None:
        send = AbstractConnection.send_packed_command

        async def counted(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
            cls.count += 1
            await send(self, *args, **kwargs)

        AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]


def filtered_queries(inbox: str) -> dict[str, dict[str, Any]]:
    """The filters and sorts the query structures answer (limit 50, with the total)."""
    newest = [{"property": "receivedAt", "isAscending": False}]
    return {
        "unread in INBOX": {"filter": {"inMailbox": inbox, "notKeyword": "$seen"}, "sort": newest},
        "flagged in INBOX": {
            "filter": {"inMailbox": inbox, "hasKeyword": "$flagged"},
            "sort": newest,
        },
        "flagged anywhere": {"filter": {"hasKeyword": "$flagged"}, "sort": newest},
        "INBOX by size, smallest first": {
            "filter": {"inMailbox": inbox},
            "sort": [{"property": "size", "isAscending": True}],
        },
        "INBOX by size, largest first": {
            "filter": {"inMailbox": inbox},
            "sort": [{"property": "size", "isAscending": False}],
        },
        "INBOX, collapsed threads": {
            "filter": {"inMailbox": inbox},
            "sort": newest,
            "collapseThreads": True,
        },
    }


def general(query: dict[str, Any]) -> dict[str, Any]:
    """The same query with a condition the structures do not answer (every email meets it)."""
    conditions = [query["filter"], {"minSize": 0}]
    return {**query, "filter": {"operator": "AND", "conditions": conditions}}


def measure_filtered(
    client: Client, account: str, inbox: str, requests: int, general_requests: int
) -> list[Filtered]:
    rows = []
    for name, query in filtered_queries(inbox).items():
        args = {"accountId": account, "limit": WINDOW, "calculateTotal": True, **query}
        started = time.perf_counter()
        first, _ = call(client, "Email/query", args)
        first_ms = (time.perf_counter() - started) * 1000
        times, trips = [], []
        for _ in range(requests):
            before = RedisTrips.count
            started = time.perf_counter()
            got, _ = call(client, "Email/query", args)
            times.append((time.perf_counter() - started) * 1000)
            trips.append(RedisTrips.count - before)
            assert got["ids"] == first["ids"], name
        slow = []
        for _ in range(general_requests):
            started = time.perf_counter()
            got, _ = call(client, "Email/query", general(args))
            slow.append((time.perf_counter() - started) * 1000)
            # The general path's answer is the same: the structures' ground truth here.
            if (got["ids"], got["total"]) != (first["ids"], first["total"]):
                raise RuntimeError(f"{name}: the general path answers otherwise")
        rows.append(
            Filtered(
                name,
                first["total"],
                first_ms,
                statistics.median(times),
                p90(times),
                max(trips),
                statistics.median(slow),
            )
        )
        print(f"  {name}: {statistics.median(times):.2f} ms", flush=True)
    return rows


def structure_octets(url: str, account: str) -> dict[str, int]:
    """MEMORY USAGE of the query structures, by kind (all folders and the account's)."""
    client = redis.Redis.from_url(url)
    found = {}
    for kind in ("unseen", "flagged", "sized"):
        found[kind] = sum(
            client.memory_usage(key, samples=0) or 0
            for key in client.scan_iter(match=f"jg:{{{account}}}:{kind}*", count=1000)
        )
    client.close()
    return found


def p90(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]


def seed(port: int, user: str, password: str, count: int) -> float:
    """seed_inbox in a child process (100,000 messages take about 400 MB to generate)."""
    started = time.perf_counter()
    child = multiprocessing.get_context("spawn").Process(
        target=seed_inbox, args=(LOOPBACK, port, user, password, count)
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"seeding {count} messages failed (exit code {child.exitcode})")
    return time.perf_counter() - started


def direct_search(wire: Wire) -> tuple[float, int]:
    """UID SEARCH SUBJECT on the selected INBOX: milliseconds and the number of UIDs found."""
    started = time.perf_counter()
    lines = wire.command(b"UID SEARCH SUBJECT", f'"{SUBJECT_WORD}"'.encode())
    elapsed = (time.perf_counter() - started) * 1000
    found = sum(len(line.split()) - 2 for line in lines if line.startswith(b"* SEARCH"))
    return elapsed, found


def measure(
    dovecot: Dovecot,
    store_url: str,
    port: int,
    pool: ImapPool,
    size: int,
    requests: int,
    general_requests: int,
) -> Row:
    row = Row(size)
    user = dovecot.fresh_user()
    password = dovecot.users[user]
    row.seed_s = seed(dovecot.imap_port, user, password, size)
    print(f"seeded {size} messages in {row.seed_s:.1f} s", flush=True)
    settle(dovecot, user)
    client = Client(port, (user, password))
    client.request("GET", "/jmap/session")
    account = json.loads(client.last_body)["primaryAccounts"]["urn:ietf:params:jmap:mail"]

    # 1. The account's first call: the INBOX is indexed.
    before = pool.stats()
    started = time.perf_counter()
    call(client, "Email/get", {"accountId": account, "ids": [], "properties": ["id"]})
    row.first_s = time.perf_counter() - started
    row.first_commands = pool.stats().commands - before.commands
    row.redis_mb = redis_bytes(store_url, account) / 1e6
    # Weighing 100,000 emails' keys outlasts the server's keep-alive: a new connection.
    client.close()
    client = Client(port, (user, password))
    print(f"first call for {size}: {row.first_s:.2f} s", flush=True)

    mailboxes, _ = call(
        client, "Mailbox/get", {"accountId": account, "ids": None, "properties": ["role"]}
    )
    inbox = next(m["id"] for m in mailboxes["list"] if m["role"] == "inbox")

    # 2. The list window, from the by-date sorted set.
    query = {
        "accountId": account,
        "filter": {"inMailbox": inbox},
        "sort": [{"property": "receivedAt", "isAscending": False}],
        "limit": WINDOW,
        "calculateTotal": True,
    }
    call(client, "Email/query", query)  # untimed: the first after the sync
    times: list[float] = []
    commands, trips, sizes = [], [], []
    for _ in range(requests):
        before = pool.stats()
        started = time.perf_counter()
        got, received = call(client, "Email/query", query)
        times.append((time.perf_counter() - started) * 1000)
        after = pool.stats()
        commands.append(after.commands - before.commands)
        trips.append(after.round_trips - before.round_trips)
        sizes.append(received)
        assert got["total"] == size and len(got["ids"]) == min(WINDOW, size), got
    row.window_median, row.window_p90 = statistics.median(times), p90(times)
    row.window_commands, row.window_trips, row.window_bytes = max(commands), max(trips), max(sizes)

    # 3. A text search, through the gateway and straight to Dovecot.
    search = {"accountId": account, "filter": {"inMailbox": inbox, "subject": SUBJECT_WORD}}
    wire = Wire(LOOPBACK, dovecot.imap_port)
    try:
        wire.login(user, password)
        wire.command(b"SELECT INBOX")
        started = time.perf_counter()
        got, _ = call(client, "Email/query", search)
        row.search_first = (time.perf_counter() - started) * 1000
        row.matches = len(got["ids"])
        _, direct_found = direct_search(wire)
        if direct_found != row.matches:
            raise RuntimeError(f"gateway found {row.matches}, Dovecot {direct_found}")
        times, direct = [], []
        commands, sizes = [], []
        for _ in range(requests):
            before = pool.stats()
            started = time.perf_counter()
            got, received = call(client, "Email/query", search)
            times.append((time.perf_counter() - started) * 1000)
            commands.append(pool.stats().commands - before.commands)
            sizes.append(received)
            assert len(got["ids"]) == row.matches
            elapsed, found = direct_search(wire)
            direct.append(elapsed)
            assert found == row.matches
        wire.command(b"LOGOUT")
    finally:
        wire.close()
    row.search_median, row.direct_median = statistics.median(times), statistics.median(direct)
    row.search_commands, row.search_bytes = max(commands), max(sizes)

    # 4. The filtered queries, beside the general path.
    row.filtered = measure_filtered(client, account, inbox, requests, general_requests)
    row.structure_octets = structure_octets(store_url, account)
    client.close()
    row.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def main(sizes: list[int], requests: int, general_requests: int, sync_interval: float) -> None:
    RedisTrips.install()
    with local_servers() as (dovecot, store):
        settings = gateway_settings(
            dovecot.url, store.url, log_level="warning", sync_interval_seconds=sync_interval
        )
        print(f"GATEWAY_SYNC_INTERVAL_SECONDS={sync_interval}")
        app = create_app(settings)
        server = uvicorn.Server(
            uvicorn.Config(
                app, host=settings.host, port=settings.port, log_config=None, access_log=False
            )
        )
        thread = serve_in_thread(server)
        rows: list[Row] = []
        try:
            wait_for_port(settings.port)
            pool = app.state.services.pool
            for size in sizes:
                rows.append(
                    measure(
                        dovecot, store.url, settings.port, pool, size, requests, general_requests
                    )
                )
        finally:
            server.should_exit = True
            thread.join(10)
    report(rows, requests)
    report_filtered(rows, requests, general_requests)


def report_filtered(rows: list[Row], requests: int, general_requests: int) -> None:
    print(
        f"\nfiltered Email/query, limit {WINDOW}, calculateTotal: median and p90 of {requests} "
        f"warm requests, Redis round trips (the most of any), beside the general path's median "
        f"({general_requests} runs); ratio: median at {rows[-1].size} / at {rows[0].size}"
    )
    print(
        f"{'query':<31} {'messages':>9} {'total':>7} {'1st ms':>8} {'median ms':>10} "
        f"{'p90 ms':>8} {'redis trips':>12} {'general ms':>11} {'gain':>7}"
    )
    names = [f.name for f in rows[0].filtered]
    for index, name in enumerate(names):
        for r in rows:
            f = r.filtered[index]
            print(
                f"{name:<31} {r.size:>9} {f.total:>7} {f.first_ms:>8.1f} {f.median:>10.2f} "
                f"{f.p90:>8.2f} {f.redis_trips:>12} {f.general_median:>11.1f} "
                f"{f.general_median / f.median:>6.0f}x"
            )
        first, last = rows[0].filtered[index], rows[-1].filtered[index]
        print(f"{name:<31} ratio {rows[-1].size}/{rows[0].size}: {last.median / first.median:.2f}")
    print("\nRedis octets per email of the query structures (MEMORY USAGE, after the queries)")
    print(f"{'messages':>9} {'unseen':>8} {'flagged':>8} {'sized':>8} {'all':>8}")
    for r in rows:
        o = r.structure_octets
        print(
            f"{r.size:>9} {o['unseen'] / r.size:>8.1f} {o['flagged'] / r.size:>8.1f} "
            f"{o['sized'] / r.size:>8.1f} {sum(o.values()) / r.size:>8.1f}"
        )


def report(rows: list[Row], requests: int) -> None:
    print("\nthe account's first call (Email/get, no ids): folders listed, INBOX indexed")
    print(
        f"{'messages':>9} {'seeding s':>10} {'first call s':>13} {'upstream cmds':>14} "
        f"{'index MB':>9} {'peak RSS MB':>12}"
    )
    for r in rows:
        print(
            f"{r.size:>9} {r.seed_s:>10.1f} {r.first_s:>13.2f} {r.first_commands:>14} "
            f"{r.redis_mb:>9.1f} {r.peak_rss_mb:>12.0f}"
        )
    print(
        f"\nEmail/query of the INBOX, receivedAt newest first, limit {WINDOW}, calculateTotal "
        f"({requests} warm requests; commands, round trips and bytes: the most of any request)"
    )
    print(
        f"{'messages':>9} {'median ms':>10} {'p90 ms':>8} {'upstream cmds':>14} "
        f"{'round trips':>12} {'bytes to client':>16}"
    )
    for r in rows:
        print(
            f"{r.size:>9} {r.window_median:>10.2f} {r.window_p90:>8.2f} {r.window_commands:>14} "
            f"{r.window_trips:>12} {r.window_bytes:>16}"
        )
    print(
        f'\nEmail/query of the INBOX with subject "{SUBJECT_WORD}" beside UID SEARCH SUBJECT '
        f'"{SUBJECT_WORD}" straight to Dovecot (INBOX selected); medians of {requests} runs'
    )
    print(
        f"{'messages':>9} {'matches':>8} {'gateway 1st ms':>15} {'gateway ms':>11} "
        f"{'upstream cmds':>14} {'bytes to client':>16} {'direct ms':>10} {'ratio':>7}"
    )
    for r in rows:
        print(
            f"{r.size:>9} {r.matches:>8} {r.search_first:>15.2f} {r.search_median:>11.2f} "
            f"{r.search_commands:>14} {r.search_bytes:>16} {r.direct_median:>10.2f} "
            f"{r.search_median / r.direct_median:>7.1f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1_000, 10_000, 100_000],
        help="INBOX sizes, comma-separated",
    )
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument(
        "--general-requests",
        type=int,
        default=5,
        help="runs of each query on the general path (slow at 100,000)",
    )
    parser.add_argument(
        "--sync-interval",
        type=float,
        default=1.0,
        help="GATEWAY_SYNC_INTERVAL_SECONDS (the default; 0: every request asks the upstream)",
    )
    args = parser.parse_args()
    main(args.sizes, args.requests, args.general_requests, args.sync_interval)
