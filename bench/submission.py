"""Sending through the gateway, beside a plain SMTP client: from the request to the INBOX.

Dovecot, Redis and a real Postfix run on loopback (bench.servers.local_sending_servers):
Postfix's submission port authenticates against Dovecot and delivers example.com into it
over LMTP. Each round one user sends a new draft to another:

*gateway*: ``EmailSubmission/set`` create of the draft (made beforehand, untimed) with the
  ``onSuccessUpdateEmail`` a client sends to file it in Sent, as the user (the gateway uses the
  request's credentials for AUTH PLAIN, GATEWAY_SMTP_AUTH=user);
*aiosmtplib, new connection*: connect, EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT with the same
  octets (the draft's, read with imaplib), as a client sending one message does;
*aiosmtplib, kept connection*: the same over one connection kept for every round, as the
  gateway keeps a user's connection between sends.

The time runs from sending the request (or opening the connection) until a plain imaplib
session sees the message in the recipient's INBOX (``STATUS INBOX (MESSAGES)`` every
millisecond), and until the answer where there is one. The gateway runs in this process (a
thread with its own event loop) so its upstream IMAP and SMTP counters can be read; the HTTP
client is the minimal h11 client of bench.core_latency.

Run: .venv/bin/python -m bench.submission [--rounds 50]
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib
import uvicorn

from bench.core_latency import Client
from bench.mailbox_get import serve_in_thread
from bench.servers import local_sending_servers
from gateway.app import create_app
from gateway.services import Services
from tests.conftest import sending_settings
from tests.servers import LOOPBACK, Dovecot, wait_for_port
from tests.smtp_servers import Postfix

DOMAIN = "example.com"
USING = [
    "urn:ietf:params:jmap:core",
    "urn:ietf:params:jmap:mail",
    "urn:ietf:params:jmap:submission",
]
# How long a message may take to arrive before the bench gives up on the run.
ARRIVAL_TIMEOUT = 30.0


@dataclass
class Series:
    """One way of sending: per round, the time to the INBOX and to the answer (ms)."""

    label: str
    arrival: list[float] = field(default_factory=list)
    answer: list[float] = field(default_factory=list)
    imap_commands: list[int] = field(default_factory=list)
    imap_round_trips: list[int] = field(default_factory=list)
    smtp_commands: list[int] = field(default_factory=list)
    octets: list[int] = field(default_factory=list)


class Inbox:
    """The recipient's INBOX as a plain IMAP client sees it."""

    def __init__(self, dovecot: Dovecot, user: str) -> None:
        self.imap = imaplib.IMAP4(LOOPBACK, dovecot.imap_port)
        self.imap.login(user, dovecot.users[user])

    def count(self) -> int:
        _, data = self.imap.status("INBOX", "(MESSAGES)")
        text = data[0].decode() if isinstance(data[0], bytes) else ""
        return int(text.rsplit("MESSAGES", 1)[1].strip(" )"))

    def wait_for(self, count: int, started: float) -> float:
        """Milliseconds from ``started`` until the INBOX holds ``count`` messages."""
        while self.count() < count:
            if time.perf_counter() - started > ARRIVAL_TIMEOUT:
                raise RuntimeError("the message did not arrive")
            time.sleep(0.001)
        return (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self.imap.logout()


class Gateway:
    """A JMAP client of the gateway in this process, as one user."""

    def __init__(self, services: Services, port: int, user: str, password: str) -> None:
        self.services = services
        self.client = Client(port, (user, password))
        self.client.request("GET", "/jmap/session")
        session = json.loads(self.client.last_body)
        self.account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
        self.address = f"{user}@{DOMAIN}"
        responses = self.call(["Mailbox/get", {"ids": None}], ["Identity/get", {"ids": None}])
        self.mailboxes = {m["role"]: m["id"] for m in responses[0][1]["list"] if m["role"]}
        self.identity = responses[1][1]["list"][0]["id"]

    def call(self, *calls: list[Any]) -> list[list[Any]]:
        body = self.body(*calls)
        status, _ = self.client.request("POST", "/jmap/api/", body)
        assert status == 200, self.client.last_body
        return json.loads(self.client.last_body)["methodResponses"]  # type: ignore[no-any-return]

    def body(self, *calls: list[Any]) -> bytes:
        method_calls = [
            [name, {"accountId": self.account, **args}, f"c{i}"]
            for i, (name, args) in enumerate(calls)
        ]
        return json.dumps({"using": USING, "methodCalls": method_calls}).encode()

    def draft(self, to: str, number: int) -> str:
        """A new draft in Drafts; returns its id."""
        email = {
            "mailboxIds": {self.mailboxes["drafts"]: True},
            "keywords": {"$draft": True, "$seen": True},
            "from": [{"email": self.address}],
            "to": [{"email": to}],
            "subject": f"Benchmark message {number}",
            "bodyStructure": {"type": "text/plain", "partId": "1"},
            "bodyValues": {"1": {"value": "Hello,\r\n\r\n" + "a line of text.\r\n" * 40}},
        }
        (response,) = self.call(["Email/set", {"create": {"d": email}}])
        return str(response[1]["created"]["d"]["id"])

    def submission(self, email_id: str) -> bytes:
        """EmailSubmission/set create of the draft, then filed in Sent (RFC 8621 7.5)."""
        on_success = {
            "#s": {
                "keywords/$draft": None,
                f"mailboxIds/{self.mailboxes['drafts']}": None,
                f"mailboxIds/{self.mailboxes['sent']}": True,
            }
        }
        create = {"identityId": self.identity, "emailId": email_id}
        return self.body(
            [
                "EmailSubmission/set",
                {"create": {"s": create}, "onSuccessUpdateEmail": on_success},
            ]
        )

    def imap_commands(self) -> tuple[int, int]:
        stats = self.services.pool.stats()
        return stats.commands, stats.round_trips

    def smtp_commands(self) -> int:
        metric = self.services.metrics.smtp_commands
        return int(
            sum(s.value for m in metric.collect() for s in m.samples if s.name.endswith("_total"))
        )


def draft_octets(dovecot: Dovecot, user: str) -> bytes:
    """The newest draft's octets, as a plain IMAP client reads them."""
    conn = imaplib.IMAP4(LOOPBACK, dovecot.imap_port)
    conn.login(user, dovecot.users[user])
    try:
        conn.select("Drafts", readonly=True)
        _, data = conn.fetch("*", "(BODY.PEEK[])")
        item = data[0]
        assert isinstance(item, tuple)
        return bytes(item[1])
    finally:
        conn.logout()


def run_gateway_rounds(
    gateway: Gateway, dovecot: Dovecot, inbox: Inbox, recipient: str, rounds: int
) -> tuple[Series, list[bytes]]:
    series = Series("gateway: EmailSubmission/set")
    octets = []
    for number in range(rounds):
        email_id = gateway.draft(recipient, number)
        octets.append(draft_octets(dovecot, gateway.address.split("@")[0]))
        body = gateway.submission(email_id)
        have = inbox.count()
        imap, smtp = gateway.imap_commands(), gateway.smtp_commands()
        started = time.perf_counter()
        status, received = gateway.client.request("POST", "/jmap/api/", body)
        series.answer.append((time.perf_counter() - started) * 1000)
        response = json.loads(gateway.client.last_body)["methodResponses"]
        assert status == 200 and response[0][1]["created"], response
        series.arrival.append(inbox.wait_for(have + 1, started))
        commands, round_trips = gateway.imap_commands()
        series.imap_commands.append(commands - imap[0])
        series.imap_round_trips.append(round_trips - imap[1])
        series.smtp_commands.append(gateway.smtp_commands() - smtp)
        series.octets.append(received)
    return series, octets


async def run_plain_rounds(
    postfix: Postfix,
    auth: tuple[str, str],
    inbox: Inbox,
    recipient: str,
    octets: list[bytes],
    *,
    keep: bool,
) -> Series:
    """aiosmtplib sending each of ``octets`` as ``auth``: a new connection per message, or one
    connection for all (``keep``)."""
    label = "aiosmtplib, kept connection" if keep else "aiosmtplib, new connection"
    series = Series(label)
    sender = f"{auth[0]}@{DOMAIN}"

    def connect() -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=LOOPBACK, port=postfix.submission_port, use_tls=False, start_tls=False
        )

    kept: aiosmtplib.SMTP | None = None
    if keep:
        kept = connect()
        await kept.connect()
        await kept.login(*auth)
    for message in octets:
        have = inbox.count()
        started = time.perf_counter()
        if kept is not None:
            await kept.sendmail(sender, [recipient], message)
        else:
            smtp = connect()
            await smtp.connect()
            await smtp.login(*auth)
            await smtp.sendmail(sender, [recipient], message)
            await smtp.quit()
        series.answer.append((time.perf_counter() - started) * 1000)
        series.arrival.append(inbox.wait_for(have + 1, started))
        # EHLO, AUTH, MAIL, RCPT, DATA, "." (and QUIT) on a new connection; MAIL to "." kept.
        series.smtp_commands.append(4 if kept is not None else 7)
        series.imap_commands.append(0)
        series.imap_round_trips.append(0)
    if kept is not None:
        await kept.quit()
    return series


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def report(rows: list[Series], rounds: int, size: int) -> None:
    print(f"one message of {size} octets to another user, {rounds} rounds")
    print(
        f"{'':32} {'to INBOX median':>15} {'p90':>7} {'answer median':>14} {'p90':>7}"
        f" {'IMAP cmds':>9} {'round trips':>11} {'SMTP cmds':>9} {'octets to client':>16}"
    )
    for row in rows:
        octets = f"{statistics.median(row.octets):,.0f}" if row.octets else "-"
        print(
            f"{row.label:32} {statistics.median(row.arrival):>12.1f} ms {p90(row.arrival):>7.1f}"
            f" {statistics.median(row.answer):>11.1f} ms {p90(row.answer):>7.1f}"
            f" {statistics.median(row.imap_commands):>9.0f}"
            f" {statistics.median(row.imap_round_trips):>11.0f}"
            f" {statistics.median(row.smtp_commands):>9.0f} {octets:>16}"
        )


def with_gateway(
    dovecot: Dovecot, redis_url: str, postfix: Postfix, work: Callable[[Services, int], None]
) -> None:
    settings = sending_settings(
        dovecot, postfix.url, redis_url, mail_domain=DOMAIN, log_level="warning"
    )
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=settings.host, port=settings.port, log_config=None, access_log=False
        )
    )
    thread = serve_in_thread(server)
    try:
        wait_for_port(settings.port)
        work(app.state.services, settings.port)
    finally:
        server.should_exit = True
        thread.join(10)


def main(rounds: int) -> None:
    with local_sending_servers() as (dovecot, redis, postfix):
        sender, recipient = dovecot.fresh_user(), dovecot.fresh_user()
        to = f"{recipient}@{DOMAIN}"
        inbox = Inbox(dovecot, recipient)
        rows: list[Series] = []
        sent: list[bytes] = []

        def through_gateway(services: Services, port: int) -> None:
            gateway = Gateway(services, port, sender, dovecot.users[sender])
            # One round first, not counted: the first login and the account's first index.
            run_gateway_rounds(gateway, dovecot, inbox, to, 1)
            series, octets = run_gateway_rounds(gateway, dovecot, inbox, to, rounds)
            rows.append(series)
            sent.extend(octets)
            gateway.client.close()

        with_gateway(dovecot, redis.url, postfix, through_gateway)
        auth = (sender, dovecot.users[sender])
        for keep in (False, True):
            rows.append(asyncio.run(run_plain_rounds(postfix, auth, inbox, to, sent, keep=keep)))
        inbox.close()
    report(rows, rounds, round(statistics.median(len(m) for m in sent)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    main(args.rounds)
