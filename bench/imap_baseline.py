"""What a plain IMAP client needs for "open INBOX, show the newest 50": the gateway's baseline.

The client does what a good one does on a fresh connection: connect (the greeting carries the
capabilities, so no CAPABILITY), LOGIN, SELECT INBOX, then one FETCH of the last 50 sequence
numbers (``n-49:n``, from the SELECT's EXISTS; UID FETCH would need the UIDs, which it does not
know yet) for UID, flags, date, size, envelope, three headers and a preview. Variants:

* PREVIEW: RFC 8970 ``PREVIEW`` (Dovecot computes it; 3 commands);
* BODY[1]<0.512>: the first 512 octets of part 1 instead; still 3 commands, but the octets
  are a MIME boundary and part headers when part 1 is itself multipart, and quoted-printable
  cut mid-escape: no usable preview without decoding it;
* BODYSTRUCTURE: what a correct client without PREVIEW does: BODYSTRUCTURE in the FETCH, then
  ``BODY.PEEK[part]<0.512>`` of each message's first text/plain part, one FETCH per part path.

Figures: commands sent (round trips, LOGIN and SELECT included), octets from and to the server
(counted at the socket, greeting included), and wall time from connect to the last response.
Before measuring, the INBOX is opened once and left alone until Maildir's cur/ is no longer
"recently changed" (see ``settle``). *cold* is then the first run after Dovecot's cache file
(dovecot.index.cache) was removed, so it parses the messages again (the OS page cache stays
warm); *warm* is the median of the later runs, served from that cache.

Run: .venv/bin/python -m bench.imap_baseline [--count 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections import defaultdict
from itertools import takewhile
from pathlib import Path

from bench.seed import Wire, seed_inbox
from bench.servers import local_dovecot
from tests.servers import LOOPBACK, Dovecot

WINDOW = 50
# ENVELOPE carries from, subject and date (decoded names are the client's work): what a
# frugal client asks for a list screen, nothing twice.
COMMON = b"UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE"
VARIANTS = {
    "PREVIEW": b"PREVIEW",
    "BODY[1]<0.512>": b"BODY.PEEK[1]<0.512>",
    "BODYSTRUCTURE": b"BODYSTRUCTURE",
}
TOKEN = re.compile(
    rb'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|\{(\d+)\}\r\n|([^\s()\[]+(?:\[[^\]]*\](?:<\d+>)?)?))'
)
Item = bytes | list["Item"]


def parse(data: bytes, pos: int = 0) -> tuple[list[Item], int]:
    """The parenthesized list that starts at ``data[pos]`` (strings, atoms, literals, lists)."""
    items: list[Item] = []
    if not data.startswith(b"(", pos):
        raise ValueError(f"no IMAP list at {pos}: {data[:80]!r}")
    pos += 1
    while match := TOKEN.match(data, pos):
        opening, closing, quoted, literal, atom = match.groups()
        pos = match.end()
        if closing:
            return items, pos
        if opening:
            sub, pos = parse(data, match.end() - 1)
            items.append(sub)
        elif literal is not None:
            items.append(data[pos : pos + int(literal)])
            pos += int(literal)
        else:
            items.append(quoted if quoted is not None else atom)
    raise ValueError(f"unbalanced IMAP list: {data[:80]!r}")


def fetch_items(response: bytes) -> tuple[int, dict[bytes, Item]]:
    """The sequence number and the items of one ``* n FETCH (...)`` response."""
    head = re.match(rb"\* (\d+) FETCH ", response)
    if head is None:
        raise ValueError(f"not a FETCH response: {response[:80]!r}")
    items, _ = parse(response, head.end())
    pairs = zip(items[::2], items[1::2], strict=True)
    return int(head.group(1)), {key: value for key, value in pairs if isinstance(key, bytes)}


def text_part(structure: Item, path: str = "") -> str | None:
    """The part number of the first text/plain part of a BODYSTRUCTURE, if any."""
    if not isinstance(structure, list) or not structure:
        return None
    if isinstance(structure[0], list):  # multipart: the children, then the subtype
        children = takewhile(lambda item: isinstance(item, list), structure)
        for number, child in enumerate(children, 1):
            if found := text_part(child, f"{path}.{number}" if path else str(number)):
                return found
        return None
    kind = [value.lower() for value in structure[:2] if isinstance(value, bytes)]
    return (path or "1") if kind == [b"text", b"plain"] else None


def imap_screen(
    host: str, port: int, user: str, password: str, *, variant: str = "PREVIEW"
) -> dict[str, int | float]:
    """Connect, LOGIN, SELECT INBOX and fetch what the newest-50 screen shows; the costs.

    Returns round_trips, bytes_down, bytes_up and ms (connect to last response), and the ms of
    each step: connect_ms (TCP and greeting), login_ms, select_ms, fetch_ms (all FETCHes).
    """
    marks = [time.perf_counter()]
    wire = Wire(host, port)
    try:
        marks.append(time.perf_counter())
        wire.login(user, password)
        marks.append(time.perf_counter())
        selected = wire.command(b"SELECT INBOX")
        marks.append(time.perf_counter())
        exists = next(int(line.split()[1]) for line in selected if line.endswith(b" EXISTS\r\n"))
        window = b"%d:%d" % (max(1, exists - WINDOW + 1), exists)
        fetched = wire.command(b"FETCH", window, b"(%s %s)" % (COMMON, VARIANTS[variant]))
        messages = dict(map(fetch_items, fetched))
        if variant == "BODYSTRUCTURE":
            by_part: dict[str, list[int]] = defaultdict(list)
            for number, items in messages.items():
                if part := text_part(items[b"BODYSTRUCTURE"]):
                    by_part[part].append(number)
            for part, numbers in sorted(by_part.items()):
                sequence_set = ",".join(map(str, numbers)).encode()
                wire.command(b"FETCH", sequence_set, b"(BODY.PEEK[%s]<0.512>)" % part.encode())
        marks.append(time.perf_counter())
        figures: dict[str, int | float] = {
            "round_trips": wire.commands,
            "bytes_down": wire.bytes_down,
            "bytes_up": wire.bytes_up,
            "ms": round((marks[-1] - marks[0]) * 1000, 2),
        }
        steps = ("connect_ms", "login_ms", "select_ms", "fetch_ms")
        for step, begin, end in zip(steps, marks[:-1], marks[1:], strict=True):
            figures[step] = round((end - begin) * 1000, 2)
        wire.command(b"LOGOUT")
    finally:
        wire.close()
    if len(messages) != min(WINDOW, exists):
        raise RuntimeError(f"{variant}: {len(messages)} FETCH responses for {window.decode()}")
    return figures


def settle(dovecot: Dovecot, user: str) -> None:
    """Bring the freshly appended INBOX to its steady state before measuring.

    The first SELECT moves the messages APPEND left in Maildir's new/ to cur/ (and takes their
    \\Recent); while cur/ changed in the last seconds, Dovecot treats it as dirty and every
    SELECT rescans all its files (about 45 ms for 10,000 instead of 1 ms). So: open INBOX, wait
    until cur/ is 3 s old, open it once more so that Dovecot records the clean state.
    """
    cur = Path(dovecot.root, "mail", user, "Maildir", "cur")
    for _ in range(2):
        wire = Wire(LOOPBACK, dovecot.imap_port)
        wire.login(user, dovecot.users[user])
        wire.command(b"SELECT INBOX")
        wire.command(b"LOGOUT")
        wire.close()
        time.sleep(max(0.0, cur.stat().st_mtime + 3 - time.time()))


def drop_cache(dovecot: Dovecot, user: str) -> None:
    """Remove the INBOX's cache file (no session has it open): Dovecot re-parses messages."""
    Path(dovecot.root, "mail", user, "Maildir", "dovecot.index.cache").unlink(missing_ok=True)


def main(count: int, runs: int) -> None:
    rows = []
    with local_dovecot() as dovecot:
        user = dovecot.fresh_user()
        password = dovecot.users[user]
        started = time.perf_counter()
        seed_inbox(LOOPBACK, dovecot.imap_port, user, password, count)
        seeding = time.perf_counter() - started
        settle(dovecot, user)
        for variant in VARIANTS:
            drop_cache(dovecot, user)
            results = [
                imap_screen(LOOPBACK, dovecot.imap_port, user, password, variant=variant)
                for _ in range(1 + runs)
            ]
            rows.append((variant, results[0], results[1:]))
    print(f"seeded {count} messages in {seeding:.1f} s")
    print(
        f"plain IMAP, newest {WINDOW} of {count} in INBOX, fresh connection per run; "
        f"warm: median of {runs} runs"
    )
    print(
        f"{'preview from':16} {'round trips':>11} {'bytes down':>10} {'bytes up':>8} "
        f"{'cold ms':>8} {'warm ms':>8} {'= connect':>9} {'+ login':>8} {'+ select':>8} "
        f"{'+ fetch':>8}"
    )
    for variant, cold, warm in rows:
        median = {key: statistics.median(run[key] for run in warm) for key in warm[0]}
        print(
            f"{variant:16} {cold['round_trips']:>11} {cold['bytes_down']:>10} "
            f"{cold['bytes_up']:>8} {cold['ms']:>8.1f} {median['ms']:>8.1f} "
            f"{median['connect_ms']:>9.1f} {median['login_ms']:>8.1f} "
            f"{median['select_ms']:>8.1f} {median['fetch_ms']:>8.1f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5, help="warm runs after the cold one")
    args = parser.parse_args()
    main(args.count, args.runs)
