"""Mailbox/get for an account with 200 folders: latency and upstream commands, cold and warm.

*cold*: the account's first request (id strategy chosen, folders listed, index written);
*warm*: every later request, where the one LIST-STATUS change check is all the upstream sees.
The gateway runs in this process (in a thread with its own event loop) so its upstream command
counter can be read; the client is the minimal h11 client of bench.core_latency.

Run: .venv/bin/python -m bench.mailbox_get [--folders 200] [--requests 100]
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import json
import statistics
import threading
import time

import uvicorn

from bench.core_latency import Client
from bench.servers import local_servers
from gateway.app import create_app
from tests.conftest import gateway_settings
from tests.servers import wait_for_port

GET = json.dumps(
    {
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [["Mailbox/get", {"accountId": "ACCOUNT", "ids": None}, "c"]],
    }
)


def serve_in_thread(server: uvicorn.Server) -> threading.Thread:
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    return thread


def main(folders: int, requests: int) -> None:
    with local_servers() as (dovecot, redis):
        user = dovecot.fresh_user()
        witness = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
        witness.login(user, dovecot.users[user])
        for i in range(folders):
            witness.create(f'"Folder {i:03d}"')
        witness.logout()
        settings = gateway_settings(dovecot.url, redis.url, log_level="warning")
        app = create_app(settings)
        server = uvicorn.Server(
            uvicorn.Config(
                app, host=settings.host, port=settings.port, log_config=None, access_log=False
            )
        )
        thread = serve_in_thread(server)
        try:
            wait_for_port(settings.port)
            client = Client(settings.port, (user, dovecot.users[user]))
            status, received = client.request("GET", "/jmap/session")
            account = json.loads(client.last_body)["primaryAccounts"]["urn:ietf:params:jmap:mail"]
            body = GET.replace("ACCOUNT", account).encode()
            pool = app.state.services.pool
            rows = []
            for label, count in (("cold (first request)", 1), ("warm", requests)):
                times, commands = [], []
                for _ in range(count):
                    before = pool.stats().commands
                    started = time.perf_counter()
                    status, received = client.request("POST", "/jmap/api/", body)
                    times.append((time.perf_counter() - started) * 1000)
                    commands.append(pool.stats().commands - before)
                    assert status == 200
                rows.append((label, statistics.median(times), max(commands), received))
            client.close()
        finally:
            server.should_exit = True
            thread.join(10)
    print(f"Mailbox/get of {folders + 6} mailboxes ({requests} warm requests)")
    print(f"{'':22} {'median ms':>10} {'upstream cmds':>14} {'bytes':>8}")
    for label, median, commands, size in rows:
        print(f"{label:22} {median:>10.2f} {commands:>14} {size:>8}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=int, default=200)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    main(args.folders, args.requests)
