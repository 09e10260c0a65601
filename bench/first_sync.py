"""An account's first sync of a big INBOX, beside the plain IMAP fetch of what the index needs.

For each size (``--sizes``, default 10,000 and 100,000) a fresh user's INBOX is seeded
(bench.seed), then in the same run:

* **baseline**: a plain ``imaplib`` session, already logged in, timed from EXAMINE INBOX to
  the end of one ``UID FETCH 1:*`` of exactly the items the gateway fetches for a new message
  (UID FLAGS INTERNALDATE RFC822.SIZE, the threading header fields as a partial section, and
  X-GUID, the id strategy on Dovecot);
* **gateway**: a gateway PROCESS (``python -m gateway serve``, as in production) answering
  the account's first request (``Email/get`` with ``ids: []``: folders listed, INBOX indexed),
  timed from the request to its answer, with the upstream commands it sent (its metrics),
  the Redis commands and reads it caused (INFO commandstats and ``total_reads_processed``, the
  client batches Redis read: its round trips), the index's octets (MEMORY USAGE of the
  account's keys), the CPU time the gateway process and Redis spent on it (steadier than
  wall time on a shared machine; the gateway's also per message), and the process's
  resident memory before the request and its peak (``VmHWM`` in /proc) after.

The ratio gateway / baseline is the issue's acceptance figure (at most 3, aim 1.5).

``--baseline REV`` also runs the gateway of revision REV (extracted with ``git archive``,
as bench.index_memory does) on the same INBOX, Redis emptied before each first sync, and
prints its row above this tree's: the before and after of one run on the same machine;
``--rounds N`` repeats both N times, alternating (a shared machine's noise shows as spread).

``--profile`` runs the same first sync in this process under cProfile instead of a gateway
process (header parsing kept on the profiled thread) and prints the top 25 functions by
cumulative and by own time.

Run: .venv/bin/python -m bench.first_sync [--sizes 10000,100000] [--baseline REV [--rounds N]]
[--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import imaplib
import io
import json
import os
import pstats
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench.core_latency import Client
from bench.email_get import redis_bytes
from bench.index_memory import HERE, extract
from bench.seed import seed_inbox
from bench.servers import local_servers
from gateway.imap.fetch import Attr, BodySection
from gateway.mime.limits import HEADER_SECTION_OCTETS
from gateway.sync.threads import THREAD_FIELDS
from tests.servers import Dovecot, RedisServer, free_ports, wait_for_port

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
# The items the gateway asks of each new message with X-GUID ids (gateway.sync.emails).
ITEMS = " ".join(
    str(item)
    for item in (
        Attr.UID,
        Attr.FLAGS,
        Attr.INTERNALDATE,
        Attr.SIZE,
        BodySection(fields=THREAD_FIELDS, partial=(0, HEADER_SECTION_OCTETS)),
        Attr.X_GUID,
    )
)
_COMMANDS = re.compile(r"^jmap_gateway_imap_commands_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)


def baseline(dovecot: Dovecot, user: str) -> dict[str, float]:
    """EXAMINE and one UID FETCH 1:* of the index's items, timed; login not counted."""
    conn = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
    conn.login(user, dovecot.users[user])
    started = time.perf_counter()
    conn.select("INBOX", readonly=True)
    status, data = conn.uid("FETCH", "1:*", f"({ITEMS})")
    seconds = time.perf_counter() - started
    assert status == "OK", data[-1]
    conn.logout()
    return {"seconds": seconds, "answers": sum(1 for d in data if isinstance(d, tuple))}


def _proc_kib(pid: int, field: str) -> int:
    """A field of /proc/PID/status in KiB (VmRSS now, VmHWM the peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (/proc/PID/stat utime and stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _redis_cpu(url: str) -> float:
    client = redis.Redis.from_url(url)
    cpu: dict[str, Any] = client.info("cpu")
    client.close()
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _upstream_commands(metrics_port: int) -> int:
    client = Client(metrics_port, ("", ""))
    client.request("GET", "/metrics")
    client.close()
    return int(sum(float(n) for n in _COMMANDS.findall(client.last_body.decode())))


def _redis_counts(url: str) -> dict[str, int]:
    """Commands by name and the reads Redis processed (one per batch a client sent)."""
    client = redis.Redis.from_url(url)
    stats: dict[str, Any] = client.info("commandstats")
    reads = int(client.info("stats")["total_reads_processed"])
    client.close()
    counts = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    counts["(reads)"] = reads
    return counts


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}


def gateway_run(
    dovecot: Dovecot, store: RedisServer, user: str, tree: Path = HERE
) -> dict[str, Any]:
    """The first request of ``user`` against a fresh gateway process of the code in ``tree``."""
    port, metrics_port = free_ports(2)
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "GATEWAY_IMAP_URL": dovecot.url,
        "GATEWAY_REDIS_URL": store.url,
        "GATEWAY_PORT": str(port),
        "GATEWAY_METRICS_PORT": str(metrics_port),
        "GATEWAY_LOG_LEVEL": "warning",
        # The benchmark times the whole first sync, so its request waits for it.
        "GATEWAY_SYNC_WAIT_SECONDS": "3600",
    }
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"], cwd=tree, env=env, stdout=log, stderr=log
        )
        try:
            wait_for_port(port)
            client = Client(port, (user, dovecot.users[user]))
            client.sock.settimeout(3600)
            client.request("GET", "/jmap/session")
            account = json.loads(client.last_body)["primaryAccounts"]["urn:ietf:params:jmap:mail"]
            rss_before = _proc_kib(server.pid, "VmRSS")
            hwm_before = _proc_kib(server.pid, "VmHWM")
            commands = _upstream_commands(metrics_port)
            redis_before = _redis_counts(store.url)
            cpu_before = _cpu_seconds(server.pid)
            redis_cpu_before = _redis_cpu(store.url)
            body = json.dumps(
                {
                    "using": USING,
                    "methodCalls": [["Email/get", {"accountId": account, "ids": []}, "c"]],
                }
            ).encode()
            started = time.perf_counter()
            status, _ = client.request("POST", "/jmap/api/", body)
            seconds = time.perf_counter() - started
            cpu = _cpu_seconds(server.pid) - cpu_before
            redis_cpu = _redis_cpu(store.url) - redis_cpu_before
            answer = json.loads(client.last_body)
            assert status == 200 and answer["methodResponses"][0][0] == "Email/get", answer
            redis_delta = _delta(redis_before, _redis_counts(store.url))
            figures = {
                "seconds": seconds,
                "cpu": cpu,
                "redis_cpu": redis_cpu,
                "upstream": _upstream_commands(metrics_port) - commands,
                "redis": redis_delta,
                "rss_before_mib": rss_before / 1024,
                "hwm_before_mib": hwm_before / 1024,
                "peak_mib": _proc_kib(server.pid, "VmHWM") / 1024,
                "octets": redis_bytes(store.url, account),
            }
            client.close()
        finally:
            server.terminate()
            server.wait(30)
    return figures


def profile_run(dovecot: Dovecot, store: RedisServer, user: str) -> str:
    """The same first sync in this process under cProfile; the two top-25 tables."""
    import gateway.offload
    from gateway.cache.account import AccountIndex
    from gateway.cache.store import Store
    from gateway.config import Settings
    from gateway.credentials import Credentials
    from gateway.sync.catch_up import CatchUp
    from gateway.upstream import imap_pool

    # Header parsing of a page goes to a thread above 64 KiB; kept inline, it is profiled.
    gateway.offload.INLINE_BELOW = 1 << 62

    async def run() -> None:
        redis_store = Store.from_url(store.url)
        pool = imap_pool(Settings(imap_url=dovecot.url, redis_url=store.url))
        try:
            login = await pool.login(Credentials(user, dovecot.users[user]))
            index = AccountIndex.of(redis_store.client, "a" + secrets.token_hex(4))
            profiler.enable()
            await CatchUp(interval=0).run(index, lambda: pool.connection(login))
            profiler.disable()
        finally:
            await pool.close()
            await redis_store.close()

    profiler = cProfile.Profile()
    asyncio.run(run())
    out = io.StringIO()
    for order in ("cumulative", "tottime"):
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(40)
    return out.getvalue()


def main(sizes: list[int], profile: bool, revision: str | None, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="jg-bench-first-sync-") as tmp:
        old = extract(revision, Path(tmp)) if revision else None
        rows = measure(sizes, profile, old, revision or "", rounds)
    if not profile:
        report(rows)


def measure(
    sizes: list[int], profile: bool, old: Path | None, revision: str, rounds: int
) -> list[tuple[int, str, dict[str, Any], dict[str, Any]]]:
    rows = []
    with local_servers() as (dovecot, store):
        for size in sizes:
            user = dovecot.fresh_user()
            started = time.perf_counter()
            seed_inbox("127.0.0.1", dovecot.imap_port, user, dovecot.users[user], size)
            print(f"seeded {size} messages in {time.perf_counter() - started:.1f} s", flush=True)
            base = baseline(dovecot, user)
            assert base["answers"] == size, base
            if profile:
                print(f"\n== profile of the first sync of {size} messages\n")
                print(profile_run(dovecot, store, user))
                continue
            for round_ in range(rounds):
                if round_:
                    _flush(store.url)
                if old is not None:
                    rows.append((size, revision, base, gateway_run(dovecot, store, user, old)))
                    _flush(store.url)
                rows.append((size, "this tree", base, gateway_run(dovecot, store, user)))
    return rows


def _flush(url: str) -> None:
    """Redis emptied: the next gateway's request is the account's first again."""
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


def report(rows: list[tuple[int, str, dict[str, Any], dict[str, Any]]]) -> None:
    print(f"\nfirst sync; baseline: imaplib EXAMINE + UID FETCH 1:* ({ITEMS})")
    print(
        f"{'messages':>9} {'gateway':>10} {'baseline s':>11} {'gateway s':>10} {'ratio':>6} "
        f"{'gw CPU s':>9} "
        f"{'gw CPU/msg':>11} {'redis CPU s':>12} {'upstream':>9} "
        f"{'redis cmds':>11} {'redis reads':>12} {'octets/email':>13} {'RSS before':>11} "
        f"{'peak RSS':>9}"
    )
    for size, label, base, gw in rows:
        redis_commands = sum(n for k, n in gw["redis"].items() if not k.startswith("("))
        print(
            f"{size:>9} {label:>10} {base['seconds']:>11.2f} {gw['seconds']:>10.2f} "
            f"{gw['seconds'] / base['seconds']:>6.1f} {gw['cpu']:>9.2f} "
            f"{gw['cpu'] / size * 1e6:>8.0f} µs {gw['redis_cpu']:>12.2f} "
            f"{gw['upstream']:>9} {redis_commands:>11} "
            f"{gw['redis'].get('(reads)', 0):>12} {gw['octets'] / size:>13.0f} "
            f"{gw['rss_before_mib']:>8.0f} MiB {gw['peak_mib']:>5.0f} MiB"
        )
    for size, label, _, gw in rows:
        top = sorted(
            ((n, k) for k, n in gw["redis"].items() if not k.startswith("(")), reverse=True
        )
        print(f"redis commands at {size}, {label}: " + ", ".join(f"{k} {n}" for n, k in top[:12]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--baseline", help="a revision whose gateway runs beside this tree's")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    main([int(s) for s in args.sizes.split(",")], args.profile, args.baseline, args.rounds)
