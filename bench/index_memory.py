"""Redis memory of the email index and the cost of its writes, this tree beside a baseline.

Two measurements, each run with this tree's code AND with a baseline revision's (extracted
with ``git archive`` into a temporary directory and imported from there by a child process),
against the same servers in one run:

1. **Memory**: a seeded N-message INBOX (bench.seed) is synced by a gateway (the account's
   first ``Email/get``); then ``MEMORY USAGE`` (samples=0) of every key of the account,
   summed per key family, in octets per email. Redis's own ``INFO commandstats`` counts the
   commands the sync sent, by name.
2. **Writes**: pages of 500 new emails written by the tree's ``IndexWriter`` straight to a
   single Redis and to a 3-node Redis Cluster: commands per page (Redis's commandstats, so
   each command inside MULTI counts), round trips per page (the client's: a MULTI/EXEC or a
   pipeline is one) and the median time per page (measured while
   the machine may be shared: give it as such).

Run: .venv/bin/python -m bench.index_memory [--count 10000] [--baseline 9710dcb]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent.parent
PAGE = 500
PAGES = 12
# Per-folder and per-thread keys are summed as one family.
_SUFFIXED = re.compile(
    r"^(uids|uids-old|uid-buckets|dated|thread-keys|thread-refs|threads|records|cache|text|sized|unseen|flagged)"
    r"(:.+)$"
)
# The by-date and sparse query sets (chunked since index format 3), summed on a row of their own.
_SORTED_SETS = ("dated", "dated:*", "unseen:*", "flagged", "flagged:*")
# A chunked set's keys (gateway.cache.chunked_set: chunks, directory, count) count as the set.
_CHUNK = re.compile(r"#(\d+|d|m)$")


def family(key: str) -> str:
    """``jg:{a}:dated:<mailbox>`` -> ``dated:*``; ``jg:{a}:emails`` -> ``emails``;
    ``jg:{a}:dated#3`` (a chunk) -> ``dated``."""
    name = _CHUNK.sub("", key.split("}:", 1)[1])
    match = _SUFFIXED.match(name)
    return f"{match.group(1)}:*" if match else name


def redis_families(url: str, account: str) -> dict[str, int]:
    client = redis.Redis.from_url(url)
    sizes: dict[str, int] = {}
    for key in client.scan_iter(match=f"jg:{{{account}}}:*", count=1000):
        name = family(key.decode())
        sizes[name] = sizes.get(name, 0) + int(client.memory_usage(key, samples=0) or 0)
    client.close()
    return sizes


def command_stats(clients: list[redis.Redis]) -> dict[str, int]:
    """Calls per command name since the last CONFIG RESETSTAT, summed over ``clients``."""
    calls: dict[str, int] = {}
    for client in clients:
        for name, stats in client.info("commandstats").items():
            command = name.removeprefix("cmdstat_").upper()
            calls[command] = calls.get(command, 0) + int(stats["calls"])
    return calls


# -- child side: runs inside the tree being measured ---------------------------------------


def child_memory(imap_url: str, redis_url: str, user: str, password: str) -> dict[str, Any]:
    import httpx
    import uvicorn

    from gateway.app import create_app
    from tests.conftest import gateway_settings
    from tests.servers import wait_for_port

    settings = gateway_settings(imap_url, redis_url, log_level="warning")
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
        )
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        wait_for_port(settings.port)
        with httpx.Client(base_url=settings.base_url, auth=(user, password), timeout=600) as http:
            session = http.get("/jmap/session").json()
            account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
            plain = redis.Redis.from_url(redis_url)
            plain.config_resetstat()
            started = time.perf_counter()
            body = {
                "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
                "methodCalls": [["Email/get", {"accountId": account, "ids": []}, "c"]],
            }
            answer = http.post("/jmap/api/", json=body).json()
            seconds = time.perf_counter() - started
            assert answer["methodResponses"][0][0] == "Email/get", answer
            calls = command_stats([plain])
            plain.close()
    finally:
        server.should_exit = True
        thread.join(10)
    return {
        "families": redis_families(redis_url, account),
        "sync_seconds": seconds,
        "calls": calls,
    }


def child_pages(url: str) -> dict[str, Any]:
    import secrets

    from gateway.cache.store import Store
    from gateway.sync.index_writer import IndexWriter, NewCopy
    from gateway.sync.threads import ref_key

    cluster = url.startswith("redis+cluster://")
    hosts = url.removeprefix("redis+cluster://").split(",") if cluster else []
    plains = (
        [redis.Redis(host=h.split(":")[0], port=int(h.split(":")[1])) for h in hosts]
        if cluster
        else [redis.Redis.from_url(url)]
    )

    async def run() -> dict[str, Any]:
        trips: list[str] = []
        store = Store.from_url(url, observer=lambda name, _s, _f: trips.append(name))
        emails = store.emails("a" + secrets.token_hex(4))
        async with emails.lease() as held:
            writer = IndexWriter(emails, held, own_threads=True)
            times: list[float] = []
            for client in plains:
                client.config_resetstat()
            for page in range(PAGES + 1):
                copies, refs, subjects = [], {}, {}
                for n in range(page * PAGE + 1, (page + 1) * PAGE + 1):
                    email_id = f"m{n:019d}"
                    thread = f"t{(n // 3):019d}"
                    copies.append(NewCopy(n, email_id, ["\\Seen"], 1_700_000_000 + n, 2000, thread))
                    refs[ref_key(f"<{n}@example.org>")] = thread
                    subjects[thread] = "a subject"
                started = time.perf_counter()
                await writer.add_copies("INBOX0000000000000000000000000000", copies, refs, subjects)
                if page:  # the first page loads scripts: not counted
                    times.append(time.perf_counter() - started)
                else:
                    trips.clear()
                    for client in plains:
                        client.config_resetstat()
        await store.close()
        calls = command_stats(plains)
        return {"median_ms": statistics.median(times) * 1000, "calls": calls, "trips": len(trips)}

    try:
        return asyncio.run(run())
    finally:
        for client in plains:
            client.close()


# -- parent side ------------------------------------------------------------------------------


def run_child(tree: Path, mode: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", mode, *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{mode} in {tree} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def extract(revision: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(HERE), "archive", revision, "gateway", "tests", "bench"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main(count: int, baseline: str) -> None:
    sys.path.insert(0, str(HERE))
    from bench.seed import seed_inbox
    from bench.servers import local_servers
    from tests.rediscluster import RedisClusterSet

    with tempfile.TemporaryDirectory(prefix="jg-bench-base-") as tmp:
        old = extract(baseline, Path(tmp))
        trees = [(f"baseline {baseline}", old), ("this tree", HERE)]
        memory: dict[str, dict[str, Any]] = {}
        with local_servers() as (dovecot, store):
            user = dovecot.fresh_user()
            password = dovecot.users[user]
            seed_inbox("127.0.0.1", dovecot.imap_port, user, password, count)
            plain = redis.Redis.from_url(store.url)
            for label, tree in trees:
                plain.flushall()
                memory[label] = run_child(tree, "memory", dovecot.url, store.url, user, password)
            pages = {label: run_child(tree, "pages", store.url) for label, tree in trees}
            plain.close()
        cluster = RedisClusterSet()
        cluster.start()
        try:
            cluster_pages = {label: run_child(tree, "pages", cluster.url) for label, tree in trees}
        finally:
            cluster.stop()
    report(count, memory, pages, cluster_pages)


def report(
    count: int,
    memory: dict[str, dict[str, Any]],
    pages: dict[str, dict[str, Any]],
    cluster_pages: dict[str, dict[str, Any]],
) -> None:
    labels = list(memory)
    print(f"\nRedis memory of the email index after the first sync of a {count}-message INBOX")
    print("(MEMORY USAGE samples=0, octets per email, by key family)")
    families = sorted(
        {f for m in memory.values() for f in m["families"]},
        key=lambda f: -max(m["families"].get(f, 0) for m in memory.values()),
    )
    print(f"{'family':24}" + "".join(f"{label:>22}" for label in labels))
    for name in families:
        row = [memory[label]["families"].get(name, 0) / count for label in labels]
        if max(row) >= 0.5:
            print(f"{name:24}" + "".join(f"{v:>22.0f}" for v in row))
    sets = [
        sum(memory[label]["families"].get(f, 0) for f in _SORTED_SETS) / count for label in labels
    ]
    print(f"{'by-date + query sets':24}" + "".join(f"{v:>22.0f}" for v in sets))
    totals = [sum(memory[label]["families"].values()) for label in labels]
    print(f"{'TOTAL per email':24}" + "".join(f"{t / count:>22.0f}" for t in totals))
    print(f"{'TOTAL MB':24}" + "".join(f"{t / 1e6:>22.2f}" for t in totals))
    print(
        f"{'first sync s (shared)':24}"
        + "".join(f"{memory[label]['sync_seconds']:>22.2f}" for label in labels)
    )
    print(
        f"{'Redis commands in sync':24}"
        + "".join(f"{sum(memory[label]['calls'].values()):>22}" for label in labels)
    )
    for title, results in (("single Redis", pages), ("3-node Redis Cluster", cluster_pages)):
        print(f"\nIndexWriter, pages of {PAGE} new emails ({PAGES} pages), {title}")
        print(f"{'':24}" + "".join(f"{label:>22}" for label in labels))
        per_page = {
            label: {c: n / PAGES for c, n in results[label]["calls"].items() if n}
            for label in labels
        }
        print(
            f"{'commands per page':24}"
            + "".join(f"{sum(per_page[label].values()):>22.1f}" for label in labels)
        )
        print(
            f"{'round trips per page':24}"
            + "".join(f"{results[label]['trips'] / PAGES:>22.1f}" for label in labels)
        )
        print(
            f"{'median ms (shared)':24}"
            + "".join(f"{results[label]['median_ms']:>22.1f}" for label in labels)
        )
        for label in labels:
            top = sorted(per_page[label].items(), key=lambda kv: -kv[1])[:8]
            print(f"  {label}: " + ", ".join(f"{c} {n:.1f}" for c, n in top))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--baseline", default="9710dcb")
    parser.add_argument("--child", nargs="+")
    options = parser.parse_args()
    if options.child:
        mode, *rest = options.child
        result = child_memory(*rest) if mode == "memory" else child_pages(*rest)
        print(json.dumps(result))
    else:
        main(options.count, options.baseline)
