"""Content codings on the gateway's own responses: which library, which level, and the octets
of the "open INBOX" screen beside what plain IMAP sends for it.

A seeded INBOX (bench.seed, ``--count`` messages) and 200 folders; the gateway runs in this
process (a thread with its own loop) and the h11 client of bench.core_latency captures, as
sent without any coding:

* the Session object (GET /jmap/session);
* the open-INBOX screen: Email/query (INBOX, newest first, limit 50, calculateTotal) and
  Email/get of its ids with the list properties (the README's list screen: from, subject,
  receivedAt, keywords, preview), in one request; and a richer list (threadId, mailboxIds,
  to, size too);
* Mailbox/get of the 206 mailboxes;
* Email/get of one email with its bodyValues (the reading screen);
* downloads of a text/plain and a text/html part and of a whole message (message/rfc822);
* small answers (Core/echo, Mailbox/get of one mailbox, Email/get of one email's list
  properties, a problem document) for the size below which encoding does not pay.

Each body is compressed by every candidate (stdlib zlib, isal and zlib-ng for gzip; brotli
and brotlicffi for br; zstandard and backports.zstd for zstd; at several levels; candidates
not installed are listed as such): octets, share of the identity octets, and the median CPU
time of one call (thread CPU time, many calls). Then the screen goes through the gateway with
each coding the gateway offers: octets on the wire (status line and headers included), beside
plain IMAP's octets for the same screen (bench.imap_baseline: LOGIN, SELECT, one FETCH of UID,
FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE, PREVIEW). Wall times are the machine's; CPU times
and octets are what to compare.

Run: .venv/bin/python -m bench.compression [--count 10000] [--requests 50]
"""

from __future__ import annotations

import argparse
import imaplib
import importlib
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from bench.core_latency import Client
from bench.imap_baseline import imap_screen
from bench.mailbox_get import serve_in_thread
from bench.seed import messages, seed_inbox
from bench.servers import local_servers
from gateway import compression
from gateway.app import create_app
from tests.conftest import gateway_settings
from tests.servers import wait_for_port

CORE, MAIL = "urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"
LIST_PROPERTIES = ["from", "subject", "receivedAt", "keywords", "preview"]
RICH_PROPERTIES = [*LIST_PROPERTIES, "threadId", "mailboxIds", "to", "size"]
# Per candidate and body: calls until this much CPU time was spent (at least MIN_CALLS).
BUDGET_SECONDS = 0.25
MIN_CALLS, MAX_CALLS = 5, 2000

Compress = Callable[[bytes], bytes]


def _candidates() -> list[tuple[str, str, str, Compress | None]]:
    """(coding, library, level, compress), compress None when the library is missing."""
    out: list[tuple[str, str, str, Compress | None]] = []

    def add(
        coding: str, library: str, levels: list[int], make: Callable[[Any, int], Compress]
    ) -> None:
        try:
            module = importlib.import_module(library)
        except ImportError:
            out.append((coding, library, "-", None))
            return
        out.extend((coding, library, str(level), make(module, level)) for level in levels)

    add("gzip", "zlib", [1, 6, 9], lambda m, lv: lambda d: m.compress(d, lv, wbits=31))
    add("gzip", "isal.isal_zlib", [1, 2, 3], lambda m, lv: lambda d: m.compress(d, lv, wbits=31))
    add("gzip", "zlib_ng.zlib_ng", [1, 6], lambda m, lv: lambda d: m.compress(d, lv, wbits=31))
    add("br", "brotli", [1, 4, 5, 6, 9, 11], lambda m, lv: lambda d: m.compress(d, quality=lv))
    add("br", "brotlicffi", [5], lambda m, lv: lambda d: m.compress(d, quality=lv))
    add(
        "zstd",
        "zstandard",
        [1, 3, 6, 9, 19],
        # One compressor per level, reused, as the gateway keeps one per thread.
        lambda m, lv: m.ZstdCompressor(level=lv).compress,
    )
    add("zstd", "backports.zstd", [3, 6], lambda m, lv: lambda d: m.compress(d, level=lv))
    return out


def cpu_us(compress: Compress, body: bytes) -> float:
    """Median thread CPU time of one call, in microseconds."""
    times: list[int] = []
    spent = 0
    while len(times) < MIN_CALLS or (spent < BUDGET_SECONDS * 1e9 and len(times) < MAX_CALLS):
        started = time.thread_time_ns()
        compress(body)
        took = time.thread_time_ns() - started
        times.append(took)
        spent += took
    return statistics.median(times) / 1000


def api(client: Client, *calls: list[Any]) -> tuple[bytes, int]:
    """POST the calls; the identity body and the octets received."""
    body = json.dumps({"using": [CORE, MAIL], "methodCalls": list(calls)}).encode()
    status, received = client.request("POST", "/jmap/api/", body)
    assert status == 200, client.last_body[:300]
    return client.last_body, received


def screen_calls(account: str, inbox: str, properties: list[str]) -> list[list[Any]]:
    query = {
        "accountId": account,
        "filter": {"inMailbox": inbox},
        "sort": [{"property": "receivedAt", "isAscending": False}],
        "limit": 50,
        "calculateTotal": True,
    }
    ids = {"resultOf": "q", "name": "Email/query", "path": "/ids"}
    get = {"accountId": account, "#ids": ids, "properties": properties}
    return [["Email/query", query, "q"], ["Email/get", get, "g"]]


def capture(client: Client, account: str) -> tuple[dict[str, bytes], dict[str, bytes], bytes]:
    """The bodies to compress, the small ones, and the open-INBOX request's body."""
    bodies: dict[str, bytes] = {}
    client.request("GET", "/jmap/session")
    bodies["Session"] = client.last_body
    folders, _ = api(client, ["Mailbox/get", {"accountId": account}, "m"])
    listed = json.loads(folders)["methodResponses"][0][1]["list"]
    inbox = next(m["id"] for m in listed if m["role"] == "inbox")
    calls = screen_calls(account, inbox, LIST_PROPERTIES)
    screen_request = json.dumps({"using": [CORE, MAIL], "methodCalls": calls}).encode()
    bodies["open INBOX (50, list props)"], _ = api(client, *calls)
    bodies["open INBOX (50, + thread, to, size)"], _ = api(
        client, *screen_calls(account, inbox, RICH_PROPERTIES)
    )
    bodies[f"Mailbox/get ({len(listed)} folders)"] = folders
    ids = json.loads(bodies["open INBOX (50, list props)"])["methodResponses"][0][1]["ids"]
    parts, _ = api(
        client,
        [
            "Email/get",
            {"accountId": account, "ids": ids, "properties": ["htmlBody", "blobId"]},
            "p",
        ],
    )
    with_html = next(
        e
        for e in json.loads(parts)["methodResponses"][0][1]["list"]
        if any(p["type"] == "text/html" for p in e["htmlBody"])
    )
    reading = {
        "accountId": account,
        "ids": [with_html["id"]],
        "properties": [
            *("from", "to", "subject", "receivedAt", "keywords"),
            *("textBody", "htmlBody", "bodyValues", "attachments"),
        ],
        "fetchAllBodyValues": True,
    }
    bodies["Email/get, 1 with bodyValues"], _ = api(client, ["Email/get", reading, "r"])
    got = json.loads(bodies["Email/get, 1 with bodyValues"])["methodResponses"][0][1]["list"][0]
    blobs = {
        "download text/plain": (got["textBody"][0]["blobId"], "text/plain"),
        "download text/html": (
            next(p for p in got["htmlBody"] if p["type"] == "text/html")["blobId"],
            "text/html",
        ),
        "download message/rfc822": (with_html["blobId"], "message/rfc822"),
    }
    for label, (blob, media) in blobs.items():
        status, _ = client.request("GET", f"/jmap/download/{account}/{blob}/x?accept={media}")
        assert status == 200
        bodies[label] = client.last_body
    # What a large download streams, piece by piece: a MiB of the seeded messages.
    bodies["1 MiB of messages (a large download)"] = b"".join(
        m.raw for m in messages("someone@example.com", 400)
    )[: 1 << 20]
    small: dict[str, bytes] = {}
    small["Core/echo"], _ = api(client, ["Core/echo", {"hello": True}, "e"])
    small["Mailbox/get of the Inbox"], _ = api(
        client, ["Mailbox/get", {"accountId": account, "ids": [inbox]}, "m"]
    )
    small["Email/get, 1, list props"], _ = api(
        client,
        ["Email/get", {"accountId": account, "ids": ids[:1], "properties": LIST_PROPERTIES}, "g"],
    )
    small["Email/get, 3, list props"], _ = api(
        client,
        ["Email/get", {"accountId": account, "ids": ids[:3], "properties": LIST_PROPERTIES}, "g"],
    )
    small["Email/query, 50 ids"], _ = api(client, screen_calls(account, inbox, [])[0])
    client.request("POST", "/jmap/api/", b"{not json")
    small["problem document (400)"] = client.last_body
    return bodies, small, screen_request


def codec_table(bodies: dict[str, bytes]) -> None:
    candidates = _candidates()
    missing = sorted({lib for _, lib, _, fn in candidates if fn is None})
    if missing:
        print(f"not installed (skipped): {', '.join(missing)}")
    for label, body in bodies.items():
        print(f"\n{label}: {len(body):,} octets identity")
        print(
            f"  {'coding':6} {'library':16} {'level':>5} {'octets':>9} {'share':>7} {'CPU us':>9}"
        )
        for coding, library, level, compress in candidates:
            if compress is None:
                continue
            encoded = compress(body)
            print(
                f"  {coding:6} {library:16} {level:>5} {len(encoded):>9,} "
                f"{len(encoded) / len(body):>7.1%} {cpu_us(compress, body):>9.1f}"
            )


def small_table(small: dict[str, bytes]) -> None:
    """What encoding saves on small answers, the Content-Encoding line counted."""
    print("\nsmall answers: octets saved by each coding as the gateway sends it, net of the")
    print("'content-encoding: X' header line (Vary is sent either way)")
    print(
        f"  {'answer':28} {'identity':>8} " + " ".join(f"{c.name:>6}" for c in compression.CODINGS)
    )
    for label, body in sorted(small.items(), key=lambda item: len(item[1])):
        saved = [
            len(body) - len(c.encode(body)) - len(f"content-encoding: {c.name}\r\n")
            for c in compression.CODINGS
        ]
        print(f"  {label:28} {len(body):>8} " + " ".join(f"{s:>6}" for s in saved))
    print(f"  (the gateway encodes from {compression.MIN_SIZE} octets on)")


def wire_table(port: int, auth: tuple[str, str], request: bytes, requests: int) -> dict[str, int]:
    """The open-INBOX request through the gateway with each coding: octets and latency."""
    rows: dict[str, int] = {}
    print(f"\nopen INBOX through the gateway ({requests} requests each, one keep-alive connection)")
    print(
        f"  {'Accept-Encoding':16} {'octets':>8} {'body':>8} {'median ms':>10} {'codec CPU us':>13}"
    )
    identity_body = b""
    for coding in ["identity", *(c.name for c in compression.CODINGS)]:
        client = Client(port, auth)
        client.headers.append(("accept-encoding", coding))
        times: list[float] = []
        for _ in range(requests):
            started = time.perf_counter()
            status, received = client.request("POST", "/jmap/api/", request)
            times.append((time.perf_counter() - started) * 1000)
            assert status == 200
        sent = client.last_headers.get("content-encoding", "identity")
        assert sent == coding, (sent, coding)
        body = client.last_body
        client.close()
        if coding == "identity":
            identity_body = body
            cost = "-"
        else:
            chosen = next(c for c in compression.CODINGS if c.name == coding)
            decoded = _decode(coding, body)
            assert (
                json.loads(decoded)["methodResponses"][1][1]["list"]
                == json.loads(identity_body)["methodResponses"][1][1]["list"]
            )
            cost = f"{cpu_us(chosen.encode, identity_body):.1f}"
        rows[coding] = received
        print(
            f"  {coding:16} {received:>8,} {len(body):>8,} {statistics.median(times):>10.2f} "
            f"{cost:>13}"
        )
    return rows


def content_floor(screen: bytes, baseline: int) -> None:
    """What the screen's own content costs at brotli's best (quality 11), each kind alone:
    the octets no coding of this JSON can go below, beside 10 % of plain IMAP's."""
    import brotli

    responses = json.loads(screen)["methodResponses"]
    emails = responses[1][1]["list"]
    kinds = {
        "previews": [e["preview"] for e in emails],
        "subjects": [e["subject"] or "" for e in emails],
        "senders (name, address)": [
            f"{a['name']} {a['email']}" for e in emails for a in e["from"] or []
        ],
        "email ids": responses[0][1]["ids"],
    }
    print("\nopen INBOX: the content alone, each kind compressed on its own (brotli 11)")
    total = 0
    for kind, values in kinds.items():
        text = "\n".join(values).encode()
        best = len(brotli.compress(text, quality=11))
        total += best
        print(f"  {kind:26} {len(text):>8,} octets -> {best:>6,}")
    print(
        f"  {'together':26} {'':>8}           {total:>6,} = {total / baseline:.1%} of IMAP's "
        f"{baseline:,}; 10 % is {baseline // 10:,}"
    )


def middleware_cost(screen: bytes, small: bytes, calls: int = 20_000) -> None:
    """CPU per response of the ContentEncoding middleware around a bare ASGI app that sends
    one JSON body: what every API answer pays, encoded or not."""
    import asyncio

    async def sink(message: dict[str, Any]) -> None:
        return None

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    def app_sending(body: bytes) -> Any:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return app

    def scope(accept: bytes | None) -> dict[str, Any]:
        headers = [(b"host", b"x")] + ([(b"accept-encoding", accept)] if accept else [])
        return {"type": "http", "path": "/jmap/api/", "method": "POST", "headers": headers}

    async def run(app: Any, sc: dict[str, Any], n: int) -> float:
        started = time.thread_time_ns()
        for _ in range(n):
            await app(sc, receive, sink)
        return (time.thread_time_ns() - started) / n / 1000

    def always(path: str) -> bool:
        return True

    cases = [
        ("bare app, 88-octet body", app_sending(small), None, False),
        ("middleware, no Accept-Encoding", app_sending(small), None, True),
        ("middleware, br offered, 88 octets", app_sending(small), b"gzip, br", True),
        ("middleware, br, open-INBOX screen", app_sending(screen), b"gzip, br", True),
        ("middleware, zstd, open-INBOX screen", app_sending(screen), b"zstd", True),
    ]
    print("\nthe middleware's CPU per response (thread CPU time, in-process, no network)")
    for label, app, accept, wrapped in cases:
        target = compression.ContentEncoding(app, always) if wrapped else app
        n = calls if "88" in label or accept is None else 500
        print(f"  {label:38} {asyncio.run(run(target, scope(accept), n)):>8.1f} us")


def _decode(coding: str, body: bytes) -> bytes:
    import gzip

    import brotli
    import zstandard

    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "br":
        return bytes(brotli.decompress(body))
    return zstandard.ZstdDecompressor().decompressobj().decompress(body)


def main(count: int, requests: int) -> None:
    with local_servers() as (dovecot, store):
        user = dovecot.fresh_user()
        password = dovecot.users[user]
        started = time.perf_counter()
        seed_inbox("127.0.0.1", dovecot.imap_port, user, password, count)
        witness = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
        witness.login(user, password)
        for i in range(200):
            witness.create(f'"Folder {i:03d}"')
        witness.logout()
        print(f"seeded {count} messages and 200 folders in {time.perf_counter() - started:.1f} s")
        settings = gateway_settings(dovecot.url, store.url, log_level="warning")
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings),
                host=settings.host,
                port=settings.port,
                log_config=None,
                access_log=False,
            )
        )
        thread = serve_in_thread(server)
        try:
            wait_for_port(settings.port)
            client = Client(settings.port, (user, password))
            client.request("GET", "/jmap/session")
            account = json.loads(client.last_body)["primaryAccounts"][MAIL]
            bodies, small, screen = capture(client, account)
            client.close()
            wire = wire_table(settings.port, (user, password), screen, requests)
        finally:
            server.should_exit = True
            thread.join(10)
        imap_first = imap_screen("127.0.0.1", dovecot.imap_port, user, password)
        imap_again = imap_screen("127.0.0.1", dovecot.imap_port, user, password)
    print("\nthe same screen from a plain IMAP client (connect, LOGIN, SELECT, FETCH ... PREVIEW)")
    for label, figures in (("first", imap_first), ("again", imap_again)):
        print(f"  {label:6} {figures['bytes_down']:>8,} octets down, {figures['bytes_up']} up")
    baseline = int(imap_first["bytes_down"])
    print(f"\nopen INBOX: gateway octets as a share of plain IMAP's {baseline:,} (goal <= 10%)")
    for coding, octets in wire.items():
        print(f"  {coding:10} {octets:>8,}  {octets / baseline:>6.1%}")
    content_floor(bodies["open INBOX (50, list props)"], baseline)
    small_table(small)
    middleware_cost(bodies["open INBOX (50, list props)"], small["Core/echo"])
    print("\ncandidates on each captured response (CPU: median of one call, this thread)")
    codec_table(bodies)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    main(args.count, args.requests)
