"""A deterministic INBOX of realistic messages, written to an IMAP account fast.

``messages(user, count, seed)`` returns the same messages for the same arguments: plain text,
multipart/alternative and multipart/mixed with a small attachment; conversations of 1-8
messages (Message-ID, In-Reply-To, References, "Re:" subjects, quoted text); 20 correspondents,
several with non-ASCII display names (RFC 2047 encoded); \\Seen on ~70%, \\Flagged ~5%,
\\Answered ~10%; INTERNALDATE spread over the two years before 2026-11-01, oldest first.

``seed_inbox`` appends them with MULTIAPPEND and LITERAL+ (no continuation round trips), 100
messages per APPEND command, over a raw socket (``Wire``, which bench.imap_baseline also uses
for its byte counts).

Run: .venv/bin/python -m bench.seed --port 143 --user USER --password PW [--count 10000]
"""

from __future__ import annotations

import argparse
import base64
import quopri
import re
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.header import Header
from email.utils import format_datetime, formataddr
from html import escape
from random import Random

END = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
SPAN = timedelta(days=730)
BATCH = 100
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# (display name, address, UTC offset in hours)
CORRESPONDENTS = (
    ("Björn Ström", "bjorn@example.org", 1),
    ("Zoë Müller", "zoe.mueller@example.de", 1),
    ("José García", "jgarcia@example.es", 1),
    ("Łukasz Żółkiewski", "lukasz@example.pl", 1),
    ("François Lefèvre", "f.lefevre@example.fr", 1),
    ("山田 太郎", "yamada@example.jp", 9),
    ("Ørjan Næss", "orjan@example.no", 1),
    ("Αλέξης Παπαδόπουλος", "alexis@example.gr", 2),
    ("Иван Петров", "ivan@example.ru", 3),
    ("Alice Johnson", "alice.johnson@example.com", -5),
    ("Bob Smith", "bob@example.net", -8),
    ("Carol Nguyen", "carol.nguyen@example.com", -5),
    ("David O'Brien", "david@example.ie", 0),
    ("Emma Wilson", "emma.wilson@example.co.uk", 0),
    ("Frank Miller", "frank@example.org", -6),
    ("Grace Lee", "grace@example.com", -8),
    ("Hannah Schmidt", "hannah@example.at", 1),
    ("Project Tracker", "notifications@tracker.example.com", 0),
    ("Weekly Digest", "digest@news.example.com", -5),
    ("Billing", "billing@shop.example.com", 0),
)
TOPICS = (
    "Quarterly report draft",
    "Lunch on {day}?",
    "Invoice #{n}",
    "Meeting notes {day}",
    "Re-org of the shared drive",
    "Your order #{n} has shipped",
    "Question about the API migration",
    "Weekly digest, issue {n}",
    "Trip to Lisbon",
    "Budget for {year}",
    "[ticket-{n}] Login fails after password change",
    "Offsite agenda",
    "Photos from the weekend",
    "Contract renewal",
    "Résumé and cover letter",
    "Déjà vu: the build is red again",
    "Code review for branch feature-{n}",
    "Reminder: dentist on {day}",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
WORDS = [
    "the",
    "we",
    "project",
    "report",
    "meeting",
    "next",
    "week",
    "please",
    "review",
    "attached",
    "draft",
    "numbers",
    "budget",
    "team",
    "schedule",
    "update",
    "thanks",
    "agree",
    "question",
    "about",
    "proposal",
    "deadline",
    "client",
    "server",
    "release",
    "notes",
    "changes",
    "issue",
    "fixed",
    "tomorrow",
    "morning",
    "afternoon",
    "call",
    "discuss",
    "plan",
    "idea",
    "quick",
    "short",
    "summary",
    "figures",
    "look",
    "good",
    "let",
    "me",
    "know",
    "if",
    "you",
    "have",
    "any",
    "concerns",
    "before",
    "friday",
    "I",
    "think",
    "should",
    "could",
    "would",
    "also",
    "still",
    "already",
    "maybe",
    "sure",
    "great",
    "sounds",
    "fine",
    "works",
    "for",
    "me",
]
CONVERSATION_SIZES = (1, 2, 3, 4, 5, 6, 7, 8)
CONVERSATION_WEIGHTS = (40, 20, 12, 9, 7, 5, 4, 3)
ATTACHMENTS = (("application", "pdf", "pdf"), ("text", "csv", "csv"), ("image", "png", "png"))


@dataclass
class Message:
    raw: bytes
    flags: str
    internaldate: datetime


def imap_date(moment: datetime) -> str:
    """An IMAP date-time (RFC 3501), independent of the locale."""
    utc = moment.astimezone(UTC)
    return f'"{utc.day:02d}-{MONTHS[utc.month - 1]}-{utc:%Y %H:%M:%S} +0000"'


def sentence(rng: Random) -> str:
    text = " ".join(rng.choices(WORDS, k=rng.randint(6, 16)))
    return text[0].upper() + text[1:] + rng.choice(".....?!")


def paragraph(rng: Random, width: int = 72) -> str:
    """1-4 sentences, wrapped at ``width`` (textwrap is ten times slower)."""
    lines, line = [], ""
    for word in " ".join(sentence(rng) for _ in range(rng.randint(1, 4))).split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*lines, line])


def part(content_type: str, text: str) -> bytes:
    """A text part: 7bit when ASCII, else quoted-printable UTF-8; CRLF line ends."""
    data = text.encode()
    cte = "7bit" if text.isascii() else "quoted-printable"
    if cte != "7bit":
        data = quopri.encodestring(data)
    body = data.replace(b"\n", b"\r\n")
    head = f'Content-Type: {content_type}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}'
    return head.encode() + b"\r\n\r\n" + body


def attachment(rng: Random) -> bytes:
    maintype, subtype, ext = rng.choice(ATTACHMENTS)
    size = rng.randint(2_000, 12_000)
    if subtype == "csv":
        rows = [
            f"2026-{i * 7 % 12 + 1:02d}-{i * 13 % 28 + 1:02d},item {i},{i * 37 % 991}"
            for i in range(size // 26)
        ]
        data = "\r\n".join(["date,item,amount", *rows]).encode()
    else:
        header = b"%PDF-1.4\n" if subtype == "pdf" else b"\x89PNG\r\n\x1a\n"
        data = header + rng.randbytes(size)
    name = f"{rng.choice(('report', 'scan', 'data', 'photo'))}.{ext}"
    head = (
        f'Content-Type: {maintype}/{subtype}; name="{name}"\r\n'
        f'Content-Disposition: attachment; filename="{name}"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    )
    return head.encode() + base64.encodebytes(data).replace(b"\n", b"\r\n")


def multipart(rng: Random, subtype: str, *parts: bytes) -> bytes:
    boundary = f"=_{rng.getrandbits(64):016x}".encode()
    head = b'Content-Type: multipart/%s; boundary="%s"\r\n\r\n' % (subtype.encode(), boundary)
    body = b"".join(b"--%s\r\n%s\r\n" % (boundary, p) for p in parts)
    return head + body + b"--%s--\r\n" % boundary


def header(text: str) -> str:
    """An unstructured header value, RFC 2047 encoded when not ASCII."""
    return text if text.isascii() else Header(text, "utf-8").encode()


def build(
    rng: Random,
    sender: tuple[str, str, int],
    to: str,
    subject: str,
    date: datetime,
    message_id: str,
    parents: list[str],
    text: str,
) -> bytes:
    name, address, offset = sender
    headers = [
        f"From: {formataddr((name, address), 'utf-8')}",
        f"To: {to}",
        f"Subject: {header(subject)}",
        f"Date: {format_datetime(date.astimezone(timezone(timedelta(hours=offset))))}",
        f"Message-ID: {message_id}",
    ]
    if parents:
        headers.append(f"In-Reply-To: {parents[-1]}")
        headers.append("References: " + "\r\n ".join(parents[-10:]))
    headers.append("MIME-Version: 1.0\r\n")
    body = part("text/plain", text)
    kind = rng.random()
    if kind >= 0.6:  # 40%: with an HTML alternative
        html = "".join(f"<p>{escape(p)}</p>\n" for p in text.split("\n\n"))
        html_part = part("text/html", f"<html><body>\n{html}</body></html>\n")
        body = multipart(rng, "alternative", body, html_part)
    if kind >= 0.85:  # 15%: and an attachment
        body = multipart(rng, "mixed", body, attachment(rng))
    return "\r\n".join(headers).encode() + body


def messages(user: str, count: int, seed: int = 42) -> list[Message]:
    """``count`` messages for ``user``'s INBOX, oldest first; the same for the same seed."""
    rng = Random(seed)
    to = f"{user}@example.com"
    dated: list[tuple[datetime, int, Message]] = []
    while len(dated) < count:
        size = rng.choices(CONVERSATION_SIZES, CONVERSATION_WEIGHTS)[0]
        people = rng.sample(CORRESPONDENTS, rng.choice((1, 1, 1, 2, 3)))
        topic = rng.choice(TOPICS).format(
            day=rng.choice(DAYS), n=rng.randint(1000, 99999), year=rng.choice((2026, 2027))
        )
        moment = END - SPAN + rng.random() * (SPAN - timedelta(days=1))
        parents: list[str] = []
        quote = ""
        for position in range(min(size, count - len(dated))):
            sender = people[position % len(people)]
            message_id = f"<{rng.getrandbits(64):016x}.{len(dated)}@{sender[1].split('@')[1]}>"
            greeting = rng.choice(("Hi", "Hello", "Dear", "Hej", "Bonjour"))
            text = [paragraph(rng) for _ in range(rng.randint(1, 4))]
            sign_off = rng.choice(("Best", "Cheers", "Thanks", "Regards"))
            body = "\n\n".join([f"{greeting} {user},", *text, f"{sign_off},\n{sender[0]}\n"])
            sent = moment - timedelta(seconds=rng.randint(1, 300))
            raw = build(
                rng,
                sender,
                to,
                topic if not parents else f"Re: {topic}",
                sent,
                message_id,
                parents,
                body + quote,
            )
            flags = [
                flag
                for flag, share in (("\\Seen", 0.7), ("\\Flagged", 0.05), ("\\Answered", 0.1))
                if rng.random() < share
            ]
            dated.append((moment, len(dated), Message(raw, f"({' '.join(flags)})", moment)))
            parents.append(message_id)
            quoted = "\n".join(f"> {line}".rstrip() for line in body.splitlines()[:12])
            quote = f"\nOn {sent:%a, %d %b %Y at %H:%M}, {sender[0]} wrote:\n{quoted}\n"
            moment = min(END, moment + timedelta(minutes=rng.expovariate(1 / 600) + 2))
    dated.sort(key=lambda item: (item[0], item[1]))
    return [message for _, _, message in dated]


class Wire:
    """A minimal IMAP client over a raw socket that counts commands and octets both ways."""

    LITERAL = re.compile(rb"\{(\d+)\}\r\n$")

    def __init__(self, host: str, port: int, timeout: float = 120.0) -> None:
        self.sock = socket.create_connection((host, port), timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.commands = self.bytes_up = self.bytes_down = 0
        self.greeting = self._line()

    def _fill(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("the IMAP server closed the connection")
        self.bytes_down += len(chunk)
        self.buffer += chunk

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            self._fill()
        return self._take(end + 2)

    def response(self) -> bytes:
        """One response, literals included."""
        data = self._line()
        while match := self.LITERAL.search(data):
            data += self._take(int(match.group(1)))
            data += self._line()
        return data

    def command(self, *parts: bytes) -> list[bytes]:
        """Send one command (``parts`` joined by spaces); its untagged responses, or raise."""
        self.commands += 1
        tag = b"a%d" % self.commands
        data = b" ".join((tag, *parts)) + b"\r\n"
        self.sock.sendall(data)
        self.bytes_up += len(data)
        untagged = []
        while not (line := self.response()).startswith(tag + b" "):
            untagged.append(line)
        if not line.startswith(tag + b" OK"):
            raise RuntimeError(f"IMAP {parts[0].decode()}: {line.decode(errors='replace')}")
        return untagged

    def login(self, user: str, password: str) -> None:
        self.command(b"LOGIN", astring(user), astring(password))

    def close(self) -> None:
        self.sock.close()


def astring(value: str) -> bytes:
    """A quoted string, or a LITERAL+ literal for what a quoted string cannot carry."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'.encode()
    data = value.encode()
    return b"{%d+}\r\n%s" % (len(data), data)


def seed_inbox(host: str, port: int, user: str, password: str, count: int, seed: int = 42) -> None:
    """Append ``messages(user, count, seed)`` to ``user``'s INBOX, 100 per MULTIAPPEND."""
    wire = Wire(host, port)
    try:
        wire.login(user, password)
        batch = messages(user, count, seed)
        for start in range(0, len(batch), BATCH):
            items = [
                b"%s %s {%d+}\r\n%s"
                % (m.flags.encode(), imap_date(m.internaldate).encode(), len(m.raw), m.raw)
                for m in batch[start : start + BATCH]
            ]
            wire.command(b"APPEND INBOX", *items)
        wire.command(b"LOGOUT")
    finally:
        wire.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=143)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    started = time.perf_counter()
    seed_inbox(args.host, args.port, args.user, args.password, args.count, args.seed)
    print(f"appended {args.count} messages in {time.perf_counter() - started:.1f} s")
