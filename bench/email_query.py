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

The gateway runs in this process (in a thread with its own event loop) so its upstream command
counter can be read; the client is the minimal h11 client of bench.core_latency.

Run: .venv/bin/python -m bench.email_query [--sizes 1000,10000,100000] [--requests 50]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import time
from dataclasses import dataclass

import uvicorn

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
    dovecot: Dovecot, store_url: str, port: int, pool: ImapPool, size: int, requests: int
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
    client.close()
    row.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def main(sizes: list[int], requests: int, sync_interval: float) -> None:
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
                rows.append(measure(dovecot, store.url, settings.port, pool, size, requests))
        finally:
            server.should_exit = True
            thread.join(10)
    report(rows, requests)


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
        "--sync-interval",
        type=float,
        default=1.0,
        help="GATEWAY_SYNC_INTERVAL_SECONDS (the default; 0: every request asks the upstream)",
    )
    args = parser.parse_args()
    main(args.sizes, args.requests, args.sync_interval)
