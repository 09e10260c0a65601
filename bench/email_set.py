"""Marking 1, 50 and 500 emails read (and unread again) with one Email/set: cost and checks.

A fresh Dovecot user's INBOX is seeded (bench.seed) with ``--messages`` messages, all made
unread (one STORE -FLAGS.SILENT (\\Seen) after seeding), and left to settle
(bench.imap_baseline.settle). The account's first call indexes it (untimed). Then, for each
size N and each of ``--repeat`` repetitions, the next N emails of the INBOX (oldest first,
so their UIDs are consecutive; a window moving through the folder and wrapping at its end,
so each run takes other emails than the one before, all unread) are:

* marked read: one ``Email/set`` with ``update: {id: {"keywords/$seen": true}}`` for each;
* marked unread again: the same with ``"keywords/$seen": null``.

Each call is timed (wall time at the client), with the upstream commands and round trips the
gateway's pool counted (``ImapPool.stats``, as bench.email_get), the time those upstream round
trips took (the connections' observer: from sending a command to reading its last answer
line), the gateway's Python time beyond it (wall time less the upstream time: HTTP, planning,
parsing the answers, Redis and its client), the CPU time of the gateway's thread during the
call (its event loop does all that work; on a shared machine this is the figure that does not
count other processes' turns), the ratios of both to the plain IMAP client's wall time for the
same change, the gateway's Redis round trips (its Redis client's observer:
one per command, pipeline, transaction or script call), the commands Redis ran (INFO
commandstats; the request's concurrency count included, MULTI and EXEC count too) and the
octets the client sent and received (HTTP headers included). Every run
is checked, untimed, before the next: the response lists all N as updated; a separate IMAP
connection (EXAMINE, UID SEARCH SEEN) finds exactly those N UIDs \\Seen after marking read
and none after marking unread; and the index agrees (Email/get ``keywords`` of the N,
Mailbox/get ``unreadEmails`` of the INBOX). A run that fails a check stops the benchmark.

"Warm" means the account is indexed and the gateway holds a logged-in upstream connection.
The whole run is repeated per ``--sync-intervals`` (GATEWAY_SYNC_INTERVAL_SECONDS; a fresh
user, INBOX and gateway for each):

* 1 (the default setting): before every timed call the account's trust mark is removed and an
  untimed ``Email/get`` with no ids catches up, so the timed call comes within the interval
  and trusts the index (no change check): the cost of the Email/set itself;
* 0: every request asks the upstream for changes first (LIST-STATUS change check), as a call
  after the interval is over would.

For comparison, a plain IMAP client on a connection already logged in does the same per run:
SELECT INBOX, then one ``UID STORE <set> +FLAGS.SILENT (\\Seen)`` (``-FLAGS.SILENT`` to mark
unread), checked the same way: round trips, octets both ways, wall time.

The gateway runs in this process (in a thread with its own event loop) so its upstream command
counter can be read; the client is the minimal h11 client of bench.core_latency. For one run
per size the upstream commands the gateway sent are printed too (its DEBUG command log).

Sizes above maxObjectsInSet (500 by default) raise the gateway's GATEWAY_MAX_OBJECTS_IN_SET
to the largest size, so that one Email/set carries them all; they need ``--messages`` of at
least twice the size for the windows not to overlap.

``--profile`` runs cProfile in the gateway's event loop thread during ten more calls of the
largest size (five read, five unread, after the timed ones and outside the table: the profiler
slows what it watches), one profile per change, and prints where their time went and the
Python function calls per call (a count the machine's load does not change); ``--profile
FILE`` also writes the statistics to FILE-<interval>-<read|unread>.pstats for pstats or
snakeviz.

Run: .venv/bin/python -m bench.email_set [--messages 1000] [--sizes 1,50,500] [--repeat 10]
     [--sync-intervals 1,0] [--profile [FILE]]
Larger sets: .venv/bin/python -m bench.email_set --messages 10000 --sizes 1,50,500,2000,5000
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import pstats
import re
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
import uvicorn

from bench.core_latency import Client
from bench.email_get import USING
from bench.email_query import p90
from bench.imap_baseline import settle
from bench.seed import Wire, seed_inbox
from bench.servers import local_servers
from gateway.app import create_app
from gateway.cache.timed import TimedRedis
from gateway.imap.pool import ImapPool
from gateway.services import Services
from tests.conftest import gateway_settings
from tests.servers import LOOPBACK, Dovecot, RedisServer, wait_for_port

SEEN = "keywords/$seen"
Profiler = cProfile.Profile | None
CHANGES = (("read", True), ("unread", None))


class CountingSocket:
    """The client's socket, counting the octets sent (Client counts those received)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent = 0

    def sendall(self, data: bytes) -> None:
        self.sent += len(data)
        self.sock.sendall(data)

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def close(self) -> None:
        self.sock.close()


class CommandLog(logging.Handler):
    """Collects the upstream commands the gateway's connections log at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.commands: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "upstream <- %s" and isinstance(record.args, tuple):
            text = str(record.args[0]).split(" ", 1)[1]  # without the tag
            self.commands.append(text if len(text) <= 70 else text[:67] + "...")


class Tap:
    """The gateway's upstream round-trip time and Redis round trips, heard from the
    observers its connections report to (the metrics object and the Redis client's)."""

    def __init__(self, services: Services) -> None:
        self.upstream_seconds = 0.0
        self.redis_trips = 0
        self.redis_names: list[str] = []  # the round trips, in order
        metrics = services.metrics
        round_trip = metrics.round_trip

        def timed(name: str, seconds: float) -> None:
            self.upstream_seconds += seconds
            round_trip(name, seconds)

        metrics.round_trip = timed  # type: ignore[method-assign]
        client = services.store.client
        assert isinstance(client, TimedRedis)
        observe = client.observer

        def counted(command: str, seconds: float, failure: str | None) -> None:
            self.redis_trips += 1
            self.redis_names.append(command)
            if observe is not None:
                observe(command, seconds, failure)

        client.observer = counted


class Gateway:
    """The gateway served in a thread of this process, with its own event loop; a profiler
    can be switched on and off in that loop's thread (cProfile watches one thread)."""

    def __init__(self, server: uvicorn.Server) -> None:
        self.server = server
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.thread.ident is not None
        self._clock = time.pthread_getcpuclockid(self.thread.ident)

    def cpu(self) -> float:
        """The CPU time the gateway's thread has used, in seconds: its event loop does all
        of a request's work (HTTP, JSON, planning, parsing, the Redis client), so this is
        its Python time whatever else the machine runs."""
        return time.clock_gettime(self._clock)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.server.serve())

    def in_loop(self, action: Callable[[], object]) -> None:
        """Run ``action`` in the gateway's thread and wait for it."""
        assert self.loop is not None
        done = threading.Event()

        def run() -> None:
            action()
            done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(10)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class Figures:
    """The timed calls of one size and change (read or unread)."""

    ms: list[float] = field(default_factory=list)
    upstream_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    redis_trips: list[int] = field(default_factory=list)
    commands: list[int] = field(default_factory=list)
    trips: list[int] = field(default_factory=list)
    redis: list[int] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    redis_trace: Counter[str] = field(default_factory=Counter)
    redis_round_trips: list[str] = field(default_factory=list)

    @property
    def beyond_ms(self) -> list[float]:
        """Per call, the wall time less the upstream round trips': the gateway's own."""
        return [total - upstream for total, upstream in zip(self.ms, self.upstream_ms, strict=True)]


def commandstats(keys: redis.Redis) -> Counter[str]:
    """Commands Redis has run, by name (INFO commandstats)."""
    info = keys.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()})


def uid_set(uids: list[int]) -> bytes:
    """The compact IMAP form of a set of UIDs: 1:3,5,7:9."""
    ordered = sorted(uids)
    pieces: list[str] = []
    start = previous = ordered[0]
    for uid in [*ordered[1:], 0]:
        if uid != previous + 1:
            pieces.append(str(start) if start == previous else f"{start}:{previous}")
            start = uid
        previous = uid
    return ",".join(pieces).encode()


def seen_uids(wire: Wire) -> set[int]:
    """The UIDs of the INBOX that are \\Seen now, on a separate connection."""
    wire.command(b"EXAMINE INBOX")
    lines = wire.command(b"UID SEARCH SEEN")
    return {int(n) for line in lines if line.startswith(b"* SEARCH") for n in line.split()[2:]}


def call(
    client: Client, sock: CountingSocket, name: str, arguments: dict[str, Any]
) -> tuple[dict[str, Any], int, int]:
    """One method call; returns its arguments, the octets sent and the octets received."""
    body = json.dumps({"using": USING, "methodCalls": [[name, arguments, "c"]]}).encode()
    before = sock.sent
    status, received = client.request("POST", "/jmap/api/", body)
    assert status == 200, client.last_body[:300]
    response = json.loads(client.last_body)["methodResponses"][0]
    if response[0] != name:
        raise RuntimeError(f"{name} answered {response}")
    return response[1], sock.sent - before, received


class Account:
    """One user's INBOX behind the gateway: its emails by UID, and the checks of a run."""

    def __init__(self, client: Client, dovecot: Dovecot, user: str) -> None:
        self.client = client
        self.sock = CountingSocket(client.sock)
        client.sock = self.sock  # type: ignore[assignment]
        client.request("GET", "/jmap/session")
        self.id = json.loads(client.last_body)["primaryAccounts"]["urn:ietf:params:jmap:mail"]
        self.wire = Wire(LOOPBACK, dovecot.imap_port)
        self.wire.login(user, dovecot.users[user])

    def call(self, name: str, arguments: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
        return call(self.client, self.sock, name, {"accountId": self.id, **arguments})

    def emails_by_uid(self) -> tuple[str, list[tuple[int, str]]]:
        """The INBOX's id and its emails as (UID, email id), matched by Message-ID."""
        mailboxes, _, _ = self.call("Mailbox/get", {"ids": None, "properties": ["role"]})
        inbox = next(m["id"] for m in mailboxes["list"] if m["role"] == "inbox")
        ids: list[str] = []
        position = 0
        while True:
            got, _, _ = self.call(
                "Email/query",
                {"filter": {"inMailbox": inbox}, "position": position, "limit": 500},
            )
            ids += got["ids"]
            position += len(got["ids"])
            if not got["ids"]:
                break
        by_message_id: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            got, _, _ = self.call(
                "Email/get", {"ids": ids[start : start + 500], "properties": ["messageId"]}
            )
            for email in got["list"]:
                by_message_id[email["messageId"][0]] = email["id"]
        self.wire.command(b"EXAMINE INBOX")
        fetched = self.wire.command(b"UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        pairs = []
        for line in fetched:
            uid = re.search(rb"UID (\d+)", line)
            message_id = re.search(rb"Message-ID: <([^>]+)>", line, re.IGNORECASE)
            assert uid and message_id, line[:200]
            pairs.append((int(uid.group(1)), by_message_id[message_id.group(1).decode()]))
        if len(pairs) != len(ids) or len(by_message_id) != len(ids):
            raise RuntimeError(f"{len(ids)} emails, {len(pairs)} messages matched by Message-ID")
        return inbox, sorted(pairs)

    def check(
        self, inbox: str, total: int, window: list[tuple[int, str]], seen: bool, answer: Any
    ) -> None:
        """That the run did what it was asked, upstream and in the index; or raise."""
        ids = [email_id for _, email_id in window]
        if answer.get("notUpdated") or sorted(answer.get("updated") or {}) != sorted(ids):
            raise RuntimeError(f"Email/set did not update all {len(ids)}: {str(answer)[:300]}")
        expected = {uid for uid, _ in window} if seen else set()
        if (found := seen_uids(self.wire)) != expected:
            raise RuntimeError(
                f"upstream: {len(found)} messages \\Seen, expected {len(expected)} "
                f"({len(found - expected)} unexpected, {len(expected - found)} missing)"
            )
        listed: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):  # maxObjectsInGet
            page = ids[start : start + 500]
            got, _, _ = self.call("Email/get", {"ids": page, "properties": ["keywords"]})
            listed += got["list"]
        wrong = [e["id"] for e in listed if e["keywords"].get("$seen", False) != seen]
        if wrong or len(listed) != len(ids):
            raise RuntimeError(f"index: {len(wrong)} of {len(ids)} with the wrong $seen")
        boxes, _, _ = self.call("Mailbox/get", {"ids": [inbox], "properties": ["unreadEmails"]})
        unread = boxes["list"][0]["unreadEmails"]
        if unread != total - len(expected):
            raise RuntimeError(f"index: unreadEmails {unread}, expected {total - len(expected)}")

    def close(self) -> None:
        self.wire.command(b"LOGOUT")
        self.wire.close()
        self.client.close()


def make_unread(dovecot: Dovecot, user: str) -> None:
    wire = Wire(LOOPBACK, dovecot.imap_port)
    wire.login(user, dovecot.users[user])
    wire.command(b"SELECT INBOX")
    wire.command(b"STORE 1:* -FLAGS.SILENT (\\Seen)")
    wire.command(b"LOGOUT")
    wire.close()


def windows(
    pairs: list[tuple[int, str]], sizes: list[int], repeat: int
) -> Iterator[tuple[int, list[tuple[int, str]]]]:
    """(size, emails) per run, an untimed run of 1 (size 0) first: a window moving through
    the INBOX and wrapping at its end, so that no run takes the emails of the one before
    (while the INBOX holds at least twice the size)."""
    offset = 0
    for size in [0, *(size for size in sizes for _ in range(repeat))]:
        if offset + max(size, 1) > len(pairs):
            offset = 0
        yield size, pairs[offset : offset + max(size, 1)]
        offset += max(size, 1)


def measure_gateway(
    dovecot: Dovecot,
    store: RedisServer,
    interval: float,
    messages: int,
    sizes: list[int],
    repeat: int,
    profile: str | None,
) -> dict[tuple[int, str], Figures]:
    user = dovecot.fresh_user()
    started = time.perf_counter()
    seed_inbox(LOOPBACK, dovecot.imap_port, user, dovecot.users[user], messages)
    make_unread(dovecot, user)
    print(f"seeded {messages} unread messages in {time.perf_counter() - started:.1f} s")
    settle(dovecot, user)
    settings = gateway_settings(
        dovecot.url,
        store.url,
        log_level="warning",
        sync_interval_seconds=interval,
        max_objects_in_set=max(500, *sizes),
    )
    app = create_app(settings)
    gateway = Gateway(
        uvicorn.Server(
            uvicorn.Config(
                app, host=settings.host, port=settings.port, log_config=None, access_log=False
            )
        )
    )
    commands = CommandLog()
    logger = logging.getLogger("gateway.imap.connection")
    logger.addHandler(commands)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    keys = redis.Redis.from_url(store.url)
    rows: dict[tuple[int, str], Figures] = {}
    try:
        wait_for_port(settings.port)
        services: Services = app.state.services
        pool: ImapPool = services.pool
        tap = Tap(services)
        account = Account(Client(settings.port, (user, dovecot.users[user])), dovecot, user)
        trust_key = f"jg:{{{account.id}}}:caught-up"
        started = time.perf_counter()
        account.call("Email/get", {"ids": [], "properties": ["id"]})
        first = time.perf_counter() - started
        inbox, pairs = account.emails_by_uid()

        def run(
            window: list[tuple[int, str]], value: bool | None, profiler: Profiler = None
        ) -> Figures:
            """One timed Email/set over the window, checked afterwards; ``profiler`` watches
            the gateway's thread during the call."""
            figures = Figures()
            update_ids = [email_id for _, email_id in window]
            if interval:
                keys.delete(trust_key)
                account.call("Email/get", {"ids": [], "properties": ["id"]})
            commands.commands.clear()
            stats_before = commandstats(keys)
            before = pool.stats()
            upstream, trips = tap.upstream_seconds, tap.redis_trips
            tap.redis_names.clear()
            if profiler is not None:
                gateway.in_loop(profiler.enable)
            cpu = gateway.cpu()
            started = time.perf_counter()
            answer, sent, received = account.call(
                "Email/set", {"update": {i: {SEEN: value} for i in update_ids}}
            )
            figures.ms.append((time.perf_counter() - started) * 1000)
            figures.cpu_ms.append((gateway.cpu() - cpu) * 1000)
            if profiler is not None:
                gateway.in_loop(profiler.disable)
            figures.upstream_ms.append((tap.upstream_seconds - upstream) * 1000)
            figures.redis_trips.append(tap.redis_trips - trips)
            after = pool.stats()
            ran = commandstats(keys) - stats_before
            ran["info"] -= 1  # the INFO before (counted once it has answered)
            figures.redis_trace = +ran
            figures.redis.append(ran.total())
            figures.commands.append(after.commands - before.commands)
            figures.trips.append(after.round_trips - before.round_trips)
            figures.sent.append(sent)
            figures.received.append(received)
            figures.trace = list(commands.commands)
            figures.redis_round_trips = list(tap.redis_names)
            account.check(inbox, messages, window, value is True, answer)
            return figures

        for size, window in windows(pairs, sizes, repeat):
            for label, value in CHANGES:
                one = run(window, value)
                figures = rows.setdefault((size, label), Figures())  # size 0: dropped
                figures.ms += one.ms
                figures.upstream_ms += one.upstream_ms
                figures.cpu_ms += one.cpu_ms
                figures.redis_trips += one.redis_trips
                figures.redis += one.redis
                figures.commands += one.commands
                figures.trips += one.trips
                figures.sent += one.sent
                figures.received += one.received
                figures.trace, figures.redis_trace = one.trace, one.redis_trace
                figures.redis_round_trips = one.redis_round_trips
        if profile is not None:
            profiled(run, pairs, max(sizes), interval, profile)
        account.close()
        rows.pop((0, "read"))
        rows.pop((0, "unread"))
    finally:
        logger.removeHandler(commands)
        keys.close()
        gateway.stop()
    print(f"GATEWAY_SYNC_INTERVAL_SECONDS={interval:g}: first call (indexing) {first:.2f} s")
    return rows


def profiled(
    run: Callable[[list[tuple[int, str]], bool | None, Profiler], Figures],
    pairs: list[tuple[int, str]],
    size: int,
    interval: float,
    path: str,
    rounds: int = 5,
) -> None:
    """``rounds`` more read and unread calls of ``size`` emails under cProfile (in the
    gateway's thread, only while each call runs), one profile per change; prints the
    functions that took longest and the Python function calls per call (a count that does
    not depend on what else runs on the machine)."""
    profilers = {label: cProfile.Profile() for label, _ in CHANGES}
    for _ in range(rounds):
        for label, value in CHANGES:
            run(pairs[:size], value, profilers[label])
    for label, profiler in profilers.items():
        if path:
            profiler.dump_stats(f"{path}-{interval:g}-{label}.pstats")
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
        print(
            f"\ncProfile of {rounds} Email/set calls of {size} emails ({label}) in the gateway's"
            f" thread, GATEWAY_SYNC_INTERVAL_SECONDS={interval:g} (times include the "
            f"profiler's own cost): {stats.total_calls / rounds:,.0f} Python function calls "
            "per call"  # type: ignore[attr-defined]
        )
        print(text.getvalue())


def measure_imap(
    dovecot: Dovecot, messages: int, sizes: list[int], repeat: int
) -> dict[tuple[int, str], Figures]:
    """SELECT INBOX + one UID STORE per run, on a connection already logged in."""
    user = dovecot.fresh_user()
    password = dovecot.users[user]
    seed_inbox(LOOPBACK, dovecot.imap_port, user, password, messages)
    make_unread(dovecot, user)
    settle(dovecot, user)
    wire = Wire(LOOPBACK, dovecot.imap_port)
    witness = Wire(LOOPBACK, dovecot.imap_port)
    rows: dict[tuple[int, str], Figures] = {}
    try:
        wire.login(user, password)
        witness.login(user, password)
        witness.command(b"EXAMINE INBOX")
        pairs = [(uid, "") for uid in _all_uids(witness)]
        for size, window in windows(pairs, sizes, repeat):
            chosen = [uid for uid, _ in window]
            for label, change in (("read", b"+FLAGS.SILENT"), ("unread", b"-FLAGS.SILENT")):
                figures = rows.setdefault((size, label), Figures())  # size 0: dropped
                commands, up, down = wire.commands, wire.bytes_up, wire.bytes_down
                started = time.perf_counter()
                wire.command(b"SELECT INBOX")
                wire.command(b"UID STORE", uid_set(chosen), change, b"(\\Seen)")
                figures.ms.append((time.perf_counter() - started) * 1000)
                figures.trips.append(wire.commands - commands)
                figures.sent.append(wire.bytes_up - up)
                figures.received.append(wire.bytes_down - down)
                expected = set(chosen) if label == "read" else set()
                if (found := seen_uids(witness)) != expected:
                    raise RuntimeError(f"IMAP: {len(found)} \\Seen, expected {len(expected)}")
        for client in (wire, witness):
            client.command(b"LOGOUT")
    finally:
        wire.close()
        witness.close()
    rows.pop((0, "read"))
    rows.pop((0, "unread"))
    return rows


def _all_uids(wire: Wire) -> list[int]:
    lines = wire.command(b"UID SEARCH ALL")
    return [int(n) for line in lines if line.startswith(b"* SEARCH") for n in line.split()[2:]]


def report(
    gateway: dict[float, dict[tuple[int, str], Figures]],
    imap: dict[tuple[int, str], Figures],
    messages: int,
    sizes: list[int],
    repeat: int,
) -> None:
    print(
        f"\nEmail/set keywords/$seen true (read) and null (unread) for N of {messages} "
        f"unread INBOX emails, one call; {repeat} runs each: median and p90 wall time, the "
        "median of the upstream round trips' time and of the gateway's time beyond it, that "
        "time's ratio to plain IMAP's median; upstream commands, round trips, Redis round "
        "trips and commands, octets: the most of any run"
    )
    head = (
        f"{'':14} {'N':>5} {'':6} {'median ms':>9} {'p90 ms':>7} {'upstream':>8} "
        f"{'beyond':>7} {'ratio':>5} {'CPU ms':>7} {'ratio':>5} {'IMAP cmds':>9} {'trips':>5} "
        f"{'Redis trips':>11} {'Redis cmds':>10} {'octets up':>9} {'down':>7}"
    )
    print(head)
    for interval, rows in gateway.items():
        for size in sizes:
            for label, _ in CHANGES:
                f = rows[(size, label)]
                beyond = statistics.median(f.beyond_ms)
                cpu = statistics.median(f.cpu_ms)
                plain = statistics.median(imap[(size, label)].ms)
                print(
                    f"{'gateway, ' + format(interval, 'g') + ' s':14} {size:>5} {label:6} "
                    f"{statistics.median(f.ms):>9.2f} {p90(f.ms):>7.2f} "
                    f"{statistics.median(f.upstream_ms):>8.2f} {beyond:>7.2f} "
                    f"{beyond / plain:>5.1f} {cpu:>7.2f} {cpu / plain:>5.1f} "
                    f"{max(f.commands):>9} {max(f.trips):>5} {max(f.redis_trips):>11} "
                    f"{max(f.redis):>10} {max(f.sent):>9} {max(f.received):>7}"
                )
    for size in sizes:
        for label, _ in CHANGES:
            f = imap[(size, label)]
            print(
                f"{'plain IMAP':14} {size:>5} {label:6} {statistics.median(f.ms):>9.2f} "
                f"{p90(f.ms):>7.2f} {'-':>8} {'-':>7} {'-':>5} {'-':>7} {'-':>5} "
                f"{max(f.trips):>9} {max(f.trips):>5} {'-':>11} {'-':>10} {max(f.sent):>9} "
                f"{max(f.received):>7}"
            )
    print(
        "\n(gateway: octets between client and gateway, HTTP headers included; upstream: "
        "the time its IMAP round trips took, from sending to reading the last answer line; "
        "beyond: wall time less upstream; CPU: the CPU time of the gateway's thread during "
        "the call (the same work, counted without the waits another process on the machine "
        "causes); ratios: beyond and CPU / plain IMAP's median wall time. "
        "plain IMAP: SELECT INBOX + UID STORE <set> +/-FLAGS.SILENT (\\Seen) on a logged-in "
        "connection, octets to and from Dovecot)"
    )
    for interval, rows in gateway.items():
        print(f"\nupstream commands of the last run, GATEWAY_SYNC_INTERVAL_SECONDS={interval:g}")
        for size in sizes:
            for label, _ in CHANGES:
                trace = rows[(size, label)].trace
                print(f"  N={size} {label}: {' | '.join(trace) or '(none)'}")
        print(f"Redis commands of the last run, GATEWAY_SYNC_INTERVAL_SECONDS={interval:g}")
        for size in sizes:
            for label, _ in CHANGES:
                ran = rows[(size, label)].redis_trace
                names = ", ".join(f"{name} {n}" for name, n in ran.most_common())
                print(f"  N={size} {label}: {names}")
        print(f"Redis round trips of the last run, GATEWAY_SYNC_INTERVAL_SECONDS={interval:g}")
        for size in sizes:
            for label, _ in CHANGES:
                trips = rows[(size, label)].redis_round_trips
                print(f"  N={size} {label}: {' '.join(trips)}")


def main(
    messages: int, sizes: list[int], repeat: int, intervals: list[float], profile: str | None
) -> None:
    if max(sizes) > messages:
        raise SystemExit(f"--sizes up to {max(sizes)} need at least as many --messages")
    gateway: dict[float, dict[tuple[int, str], Figures]] = {}
    with local_servers() as (dovecot, store):
        for interval in intervals:
            gateway[interval] = measure_gateway(
                dovecot, store, interval, messages, sizes, repeat, profile
            )
        imap = measure_imap(dovecot, messages, sizes, repeat)
    report(gateway, imap, messages, sizes, repeat)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000, help="INBOX size")
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 50, 500],
        help="emails per Email/set, comma-separated",
    )
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per size")
    parser.add_argument(
        "--sync-intervals",
        type=lambda text: [float(part) for part in text.split(",")],
        default=[1.0, 0.0],
        help="GATEWAY_SYNC_INTERVAL_SECONDS values, comma-separated (0: every request asks)",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="",
        metavar="FILE",
        help="profile the gateway during more calls of the largest size (printed at the end; "
        "with FILE also written to FILE-<interval>-<read|unread>.pstats)",
    )
    args = parser.parse_args()
    main(args.messages, args.sizes, args.repeat, args.sync_intervals, args.profile)
