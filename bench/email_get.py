"""A 10,000-message INBOX through the gateway: first sync, Redis memory, and the list screen.

Figures printed:

* the first sync of the INBOX (the account's first JMAP call): wall time, upstream commands,
  and the Redis memory the account's index then takes (MEMORY USAGE of its keys);
* Email/get of the newest 50 emails with list properties (from, subject, receivedAt,
  keywords, preview), cold (nothing cached) and warm: latency, upstream commands, bytes to
  the client;
* side by side, what a plain IMAP client needs for the same screen (bench.imap_baseline).

The gateway runs in this process (in a thread with its own event loop) so its upstream
command counter can be read; the client is the minimal h11 client of bench.core_latency.

Run: .venv/bin/python -m bench.email_get [--count 10000] [--requests 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import redis
import uvicorn

from bench.core_latency import Client
from bench.imap_baseline import imap_screen
from bench.mailbox_get import serve_in_thread
from bench.seed import seed_inbox
from bench.servers import local_servers
from gateway.app import create_app
from tests.conftest import gateway_settings
from tests.servers import wait_for_port

LIST_PROPERTIES = ["from", "subject", "receivedAt", "keywords", "preview"]
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


def call(client: Client, name: str, arguments: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """One method call; returns its arguments and the octets the client received."""
    body = json.dumps({"using": USING, "methodCalls": [[name, arguments, "c"]]}).encode()
    status, received = client.request("POST", "/jmap/api/", body)
    assert status == 200, client.last_body[:300]
    response = json.loads(client.last_body)["methodResponses"][0]
    assert response[0] == name, response
    return response[1], received


def redis_bytes(url: str, account: str) -> int:
    """MEMORY USAGE summed over the account's keys (its hash tag)."""
    client = redis.Redis.from_url(url)
    total = sum(
        client.memory_usage(key, samples=0) or 0
        for key in client.scan_iter(match=f"jg:{{{account}}}:*", count=1000)
    )
    client.close()
    return total


def newest(client: Client, account: str, count: int) -> list[str]:
    """The ids of the newest ``count`` emails (index data only; not part of the figures)."""
    newest_first = [{"property": "receivedAt", "isAscending": False}]
    found, _ = call(
        client, "Email/query", {"accountId": account, "sort": newest_first, "limit": count}
    )
    ids: list[str] = found["ids"]
    return ids


def main(count: int, requests: int) -> None:
    with local_servers() as (dovecot, store):
        user = dovecot.fresh_user()
        password = dovecot.users[user]
        started = time.perf_counter()
        seed_inbox("127.0.0.1", dovecot.imap_port, user, password, count)
        print(f"seeded {count} messages in {time.perf_counter() - started:.1f} s")
        settings = gateway_settings(dovecot.url, store.url, log_level="warning")
        app = create_app(settings)
        server = uvicorn.Server(
            uvicorn.Config(
                app, host=settings.host, port=settings.port, log_config=None, access_log=False
            )
        )
        thread = serve_in_thread(server)
        rows = []
        try:
            wait_for_port(settings.port)
            client = Client(settings.port, (user, password))
            client.request("GET", "/jmap/session")
            account = json.loads(client.last_body)["primaryAccounts"]["urn:ietf:params:jmap:mail"]
            pool = app.state.services.pool
            # The account's first call: folders listed, INBOX indexed.
            before = pool.stats()
            started = time.perf_counter()
            call(client, "Email/get", {"accountId": account, "ids": [], "properties": ["id"]})
            sync_ms = (time.perf_counter() - started) * 1000
            sync_commands = pool.stats().commands - before.commands
            memory = redis_bytes(store.url, account)
            ids = newest(client, account, 50)
            get = {"accountId": account, "ids": ids, "properties": LIST_PROPERTIES}
            for label, repeat in (("cold (nothing cached)", 1), ("warm", requests)):
                times, commands, trips, sizes = [], [], [], []
                for _ in range(repeat):
                    before = pool.stats()
                    started = time.perf_counter()
                    got, received = call(client, "Email/get", get)
                    times.append((time.perf_counter() - started) * 1000)
                    after = pool.stats()
                    commands.append(after.commands - before.commands)
                    trips.append(after.round_trips - before.round_trips)
                    sizes.append(received)
                    assert len(got["list"]) == 50
                rows.append(
                    (label, statistics.median(times), max(commands), max(trips), max(sizes))
                )
            client.close()
        finally:
            server.should_exit = True
            thread.join(10)
        imap_cold = imap_screen("127.0.0.1", dovecot.imap_port, user, password)
        imap_warm = imap_screen("127.0.0.1", dovecot.imap_port, user, password)
    print(
        f"first sync of a {count}-message INBOX: {sync_ms / 1000:.2f} s, "
        f"{sync_commands} upstream commands, index in Redis {memory / 1e6:.1f} MB "
        f"({memory / count:.0f} bytes per message)"
    )
    print(f"\nEmail/get of the newest 50, properties {LIST_PROPERTIES}")
    print(
        f"{'':24} {'median ms':>10} {'upstream cmds':>14} {'round trips':>12} "
        f"{'bytes to client':>16}"
    )
    for label, median, commands, trips, size in rows:
        print(f"{label:24} {median:>10.2f} {commands:>14} {trips:>12} {size:>16}")
    print("\nthe same screen from a plain IMAP client (connect, login, select, fetch)")
    print(f"{'':24} {'ms':>10} {'round trips':>14} {'bytes down':>16} {'bytes up':>10}")
    for label, figures in (("first", imap_cold), ("again", imap_warm)):
        print(
            f"{label:24} {figures['ms']:>10.2f} {figures['round_trips']:>14} "
            f"{figures['bytes_down']:>16} {figures['bytes_up']:>10}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    main(args.count, args.requests)
