"""The worst stall a hostile request or message causes another user, on real Dovecot and Redis.

The gateway serves every user from one event loop: work that runs long on it delays everyone.
This benchmark runs the gateway as its own process (``python -m gateway serve``), as in
production, and a canary user who keeps asking ``Core/echo`` and ``/healthz`` on two keep-alive
connections, 10 ms apart. Each item of the hostile corpus then runs as another user, one at a
time; the canary's slowest answer while the item ran is its stall. The goal: under
100 ms for every item.

Items:

* requests (``REQUESTS``): JSON nested to the parser's limit, result references that double
  the response at every call, SearchSnippet/get with 100,000 terms, blob ids nested hundreds of
  times, a filter of 1,000 text conditions, Basic credentials of 8,000 octets;
* Email/parse of an upload of 250,000 MIME parts;
* messages (``tests.hostile_mail.CORPUS``): each message is APPENDed to a fresh user's INBOX,
  then that user's client syncs (Mailbox/get), reads it whole (Email/get of every property, every
  body value), asks for a snippet, downloads the message and its first part, and parses an
  upload of the same octets (Email/parse).

Prints, per item: what the hostile client got (HTTP status, or the method error), how long its
work took, and the canary's worst and median latency over that time.

Run: .venv/bin/python -m bench.hostile [--only NAME] [--echo-calls 32]
"""

from __future__ import annotations

import argparse
import imaplib
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import h11

from bench.core_latency import ECHO, Client
from bench.servers import local_servers
from tests import hostile_mail
from tests.servers import (
    FRESH_PASSWORD,
    Dovecot,
    RedisServer,
    free_ports,
    wait_for_port,
)

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
CANARY_GAP = 0.010


@dataclass
class Probe:
    started: float
    seconds: float


class Canary:
    """Another user's client: Core/echo and /healthz in turn, each on its own connection.

    A connection the gateway drops (a keep-alive timer that fired while the loop was stuck)
    counts as a probe that failed after the time it took, and is opened again.
    """

    def __init__(self, port: int, auth: tuple[str, str]) -> None:
        self.port = port
        self.auth = auth
        self.clients = {"api": Client(port, auth), "health": Client(port, auth)}
        self.probes: list[Probe] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.clients["api"].request("POST", "/jmap/api/", ECHO)  # warm up: login, keep-alive
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for client in self.clients.values():
            client.close()

    def _run(self) -> None:
        calls = [("api", "POST", "/jmap/api/", ECHO), ("health", "GET", "/healthz", b"")]
        turn = 0
        while not self._stop.is_set():
            name, method, path, body = calls[turn % 2]
            turn += 1
            started = time.perf_counter()
            try:
                self.clients[name].request(method, path, body)
            except (OSError, h11.ProtocolError):
                self.failures += 1
                self.clients[name].close()
                self.clients[name] = Client(self.port, self.auth)
            self.probes.append(Probe(started, time.perf_counter() - started))
            time.sleep(CANARY_GAP)

    def during(self, start: float, end: float) -> list[float]:
        """Latencies (ms) of the probes that overlapped [start, end]."""
        return [
            p.seconds * 1000
            for p in list(self.probes)
            if p.started < end and p.started + p.seconds > start
        ]


class Hostile:
    """The attacker's side: JMAP requests as one user, with what each answered."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.port = port
        self.auth = (user, password)
        self.client = Client(port, self.auth)
        self.outcome = ""

    def api(self, calls: list[list[Any]], using: tuple[str, ...] = (CORE, MAIL)) -> Any:
        return self.raw_api(json.dumps({"using": list(using), "methodCalls": calls}).encode())

    def raw_api(self, body: bytes) -> Any:
        status, _ = self.client.request("POST", "/jmap/api/", body)
        answer = json.loads(self.client.last_body or b"null")
        self.outcome = _outcome(status, answer)
        return answer

    def upload(self, data: bytes) -> str:
        account = self.account_id()
        status, _ = self.client.request("POST", f"/jmap/upload/{account}/", data)
        if status != 201:
            raise RuntimeError(f"upload: HTTP {status}")
        return str(json.loads(self.client.last_body)["blobId"])

    def download(self, blob_id: str) -> None:
        account = self.account_id()
        status, received = self.client.request("GET", f"/jmap/download/{account}/{blob_id}/x")
        self.outcome = f"download {status}, {received} octets"

    def account_id(self) -> str:
        self.client.request("GET", "/jmap/session")
        session = json.loads(self.client.last_body)
        return str(session["primaryAccounts"][MAIL])


def _outcome(status: int, answer: Any) -> str:
    if status != 200:
        kind = answer.get("type", "") if isinstance(answer, dict) else ""
        return f"HTTP {status} {kind.rsplit(':', 1)[-1]}".strip()
    errors = [r[1].get("type") for r in answer["methodResponses"] if r[0] == "error"]
    return f"error {errors[-1]}" if errors else "ok"


# -- the request corpus ------------------------------------------------------------------------


def nested_arrays(h: Hostile, args: argparse.Namespace) -> None:
    """9.6 MB of arrays nested 120 deep (just under the parser's depth limit)."""
    one = "[" * 120 + "]" * 120
    arrays = ",".join([one] * (9_600_000 // (len(one) + 1)))
    body = f'{{"using":["{CORE}"],"methodCalls":[["Core/echo",{{"a":[{arrays}]}},"c"]]}}'
    h.raw_api(body.encode())


def doubling_echo(h: Hostile, args: argparse.Namespace) -> None:
    """Each Core/echo takes the whole previous response twice."""
    calls: list[list[Any]] = [["Core/echo", {"seed": "x" * 2000}, "c0"]]
    for n in range(1, args.echo_calls):
        ref = {"resultOf": f"c{n - 1}", "name": "Core/echo", "path": ""}
        calls.append(["Core/echo", {"#a": ref, "#b": ref}, f"c{n}"])
    h.api(calls, using=(CORE,))


def snippet_terms(h: Hostile, args: argparse.Namespace) -> None:
    """SearchSnippet/get with 100,000 words to mark."""
    account = h.account_id()
    words = " ".join(f"w{i}" for i in range(100_000))
    h.api(
        [
            ["Email/query", {"accountId": account, "limit": 5}, "q"],
            [
                "SearchSnippet/get",
                {
                    "accountId": account,
                    "filter": {"text": words},
                    "#emailIds": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                },
                "s",
            ],
        ]
    )


def nested_blob_ids(h: Hostile, args: argparse.Namespace) -> None:
    """Email/parse of an upload named through 400 levels of part-of-blob ids."""
    blob_id = h.upload(b"Subject: x\r\n\r\nhello\r\n")
    for _ in range(400):
        blob_id = f"S{blob_id}_1"
    h.api([["Email/parse", {"accountId": h.account_id(), "blobIds": [blob_id]}, "p"]])


def many_text_conditions(h: Hostile, args: argparse.Namespace) -> None:
    """Email/query with a filter of 1,000 text conditions."""
    conditions = [{"text": f"word{i}"} for i in range(1000)]
    h.api(
        [
            [
                "Email/query",
                {
                    "accountId": h.account_id(),
                    "filter": {"operator": "OR", "conditions": conditions},
                },
                "q",
            ]
        ]
    )


def long_credentials(h: Hostile, args: argparse.Namespace) -> None:
    """Basic credentials of 8,000 octets."""
    client = Client(h.port, (h.auth[0], "p" * 8000))
    status, _ = client.request("POST", "/jmap/api/", ECHO)
    client.close()
    h.outcome = f"HTTP {status}"


def parse_upload(h: Hostile, args: argparse.Namespace) -> None:
    """Email/parse of an upload of 250,000 MIME parts (nothing is stored upstream)."""
    blob_id = h.upload(hostile_mail.upload_many_parts())
    h.api([["Email/parse", {"accountId": h.account_id(), "blobIds": [blob_id]}, "p"]])


REQUESTS: dict[str, Callable[[Hostile, argparse.Namespace], None]] = {
    "request: JSON nested arrays, 9.6 MB": nested_arrays,
    "request: references doubling the response": doubling_echo,
    "request: SearchSnippet/get, 100k terms": snippet_terms,
    "request: blob id nested 400 times": nested_blob_ids,
    "request: filter of 1,000 text conditions": many_text_conditions,
    "request: Basic credentials of 8,000 octets": long_credentials,
    "request: Email/parse of an upload of 250k parts": parse_upload,
}


# -- the message corpus ------------------------------------------------------------------------


def read_message(h: Hostile, message: bytes) -> None:
    """What a client does with a new message: sync, read it whole, snippet, download, parse."""
    account = h.account_id()
    h.api([["Mailbox/get", {"accountId": account}, "m"]])
    answer = h.api(
        [
            ["Email/query", {"accountId": account}, "q"],
            [
                "Email/get",
                {
                    "accountId": account,
                    "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                    "properties": [
                        "id",
                        "blobId",
                        "subject",
                        "from",
                        "headers",
                        "bodyStructure",
                        "textBody",
                        "htmlBody",
                        "attachments",
                        "bodyValues",
                        "preview",
                        "references",
                        "inReplyTo",
                        "hasAttachment",
                    ],
                    "fetchAllBodyValues": True,
                },
                "g",
            ],
            [
                "SearchSnippet/get",
                {
                    "accountId": account,
                    "filter": {"text": "hello"},
                    "#emailIds": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                },
                "s",
            ],
        ]
    )
    outcome = h.outcome
    emails = [r[1] for r in answer["methodResponses"] if r[0] == "Email/get"]
    for email in emails[0]["list"] if emails else []:
        h.download(email["blobId"])
        parts = email.get("attachments") or email.get("textBody") or []
        if parts and parts[0].get("blobId"):
            h.download(parts[0]["blobId"])
    blob_id = h.upload(message)
    h.api([["Email/parse", {"accountId": account, "blobIds": [blob_id]}, "p"]])
    h.outcome = f"{outcome}; parse {h.outcome}"


def append(dovecot: Dovecot, user: str, message: bytes) -> None:
    imap = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
    imap.login(user, FRESH_PASSWORD)
    imap.append("INBOX", None, None, message)
    imap.logout()


# -- running -----------------------------------------------------------------------------------


@contextmanager
def gateway(dovecot: Dovecot, redis: RedisServer) -> Iterator[int]:
    port, metrics_port = free_ports(2)
    env = {
        "GATEWAY_IMAP_URL": dovecot.url,
        "GATEWAY_REDIS_URL": redis.url,
        "GATEWAY_PORT": str(port),
        "GATEWAY_METRICS_PORT": str(metrics_port),
        "GATEWAY_LOG_LEVEL": "error",
        "GATEWAY_SYNC_INTERVAL_SECONDS": "0",
        "PATH": os.environ.get("PATH", ""),
    }
    server = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env)
    try:
        wait_for_port(port)
        yield port
    finally:
        server.terminate()
        server.wait(30)


def measure(name: str, canary: Canary, work: Callable[[], str]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        outcome = work()
    except (OSError, RuntimeError, ValueError, KeyError, h11.ProtocolError) as exc:
        outcome = f"client failed: {type(exc).__name__}"
    ended = time.perf_counter()
    time.sleep(3 * CANARY_GAP)  # let a probe that was stuck behind the work come back
    latencies = canary.during(started, ended) or [0.0]
    return {
        "item": name,
        "outcome": outcome[:40],
        "seconds": round(ended - started, 2),
        "worst_ms": round(max(latencies), 1),
        "median_ms": round(statistics.median(latencies), 1),
    }


def main(args: argparse.Namespace) -> None:
    with local_servers() as (dovecot, redis), gateway(dovecot, redis) as port:
        canary = Canary(port, ("bob", dovecot.users["bob"]))
        canary.start()
        try:
            rows = run_corpus(args, dovecot, port, canary)
        finally:
            canary.stop()
    print(f"{'item':48} {'outcome':40} {'work s':>7} {'worst ms':>9} {'median ms':>9}")
    for row in rows:
        print(
            f"{row['item']:48} {row['outcome']:40} {row['seconds']:>7} "
            f"{row['worst_ms']:>9} {row['median_ms']:>9}"
        )
    worst = max((row["worst_ms"] for row in rows), default=0.0)
    print(f"worst stall of the canary over the corpus: {worst} ms")


def run_corpus(
    args: argparse.Namespace, dovecot: Dovecot, port: int, canary: Canary
) -> list[dict[str, Any]]:
    rows = []
    # A baseline window with no hostile work: the canary's own noise on this machine.
    rows.append(measure("(nothing)", canary, lambda: (time.sleep(2), "idle")[1]))
    for name, request in REQUESTS.items():
        if args.only and args.only not in name:
            continue
        hostile = Hostile(port, *_fresh_user())
        append(dovecot, hostile.auth[0], b"Subject: hello\r\n\r\nhello world\r\n")

        def run(request: Callable[..., None] = request, hostile: Hostile = hostile) -> str:
            request(hostile, args)
            return hostile.outcome

        rows.append(measure(name, canary, run))
    for name, build in hostile_mail.CORPUS.items():
        label = f"message: {name}"
        if args.only and args.only not in label:
            continue
        hostile = Hostile(port, *_fresh_user())
        message = build()

        def read(message: bytes = message, hostile: Hostile = hostile) -> str:
            append(dovecot, hostile.auth[0], message)
            read_message(hostile, message)
            return hostile.outcome

        rows.append(measure(label, canary, read))
    return rows


_users = itertools.count(1)


def _fresh_user() -> tuple[str, str]:
    """A new user with an empty mailbox (the test Dovecot lets every t-* user in)."""
    return f"t-bench-{os.getpid()}-{next(_users)}", FRESH_PASSWORD


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the items whose name contains this")
    parser.add_argument(
        "--echo-calls",
        type=int,
        default=32,
        help="Core/echo calls of the doubling item (each doubles the response)",
    )
    main(parser.parse_args())
