"""Helpers for the watcher tests: what the journal committed, and what the upstream sees.

The journal is the one path every change takes to push (gateway.cache.journal); hearing it
shows a watcher's catch-up ran without any request. The count of a user's sessions comes from
Dovecot itself (``doveadm who``), not from the gateway's own bookkeeping.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import imaplib
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

import pytest

from gateway.auth import Principal
from gateway.cache import journal
from gateway.cache.journal import StateChange
from gateway.cache.keys import AccountKeys
from gateway.services import Services
from tests.cyrus import Cyrus
from tests.servers import Dovecot

TIMEOUT = 15.0

MESSAGE = (
    b"From: someone@example.com\r\nTo: user@example.com\r\nSubject: {subject}\r\n"
    b"Message-ID: <{subject}@example.com>\r\n\r\nBody.\r\n"
)


def message(subject: str) -> bytes:
    return MESSAGE.replace(b"{subject}", subject.encode())


class Heard:
    """The state changes the journal committed in this process, by account."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, dict[str, str]]] = []
        self._arrived = asyncio.Event()

    def __call__(self, account_id: str, changes: Sequence[StateChange]) -> None:
        self.changes.append((account_id, {c.data_type: c.state for c in changes}))
        self._arrived.set()

    def mark(self) -> int:
        return len(self.changes)

    def types(self, account_id: str, since: int) -> set[str]:
        """The types of ``account_id`` changed since ``mark()`` returned ``since``."""
        return {t for a, states in self.changes[since:] if a == account_id for t in states}

    def latest(self, account_id: str) -> dict[str, str]:
        """The newest state heard per type."""
        out: dict[str, str] = {}
        for a, states in self.changes:
            if a == account_id:
                out.update(states)
        return out

    async def until(
        self, account_id: str, since: int, wanted: set[str], timeout: float = TIMEOUT
    ) -> set[str]:
        """Wait until all of ``wanted`` changed since ``since``; the types that did."""
        async with asyncio.timeout(timeout):
            while not wanted <= self.types(account_id, since):
                self._arrived.clear()
                await self._arrived.wait()
        return self.types(account_id, since)


@contextlib.contextmanager
def hearing() -> Iterator[Heard]:
    heard = Heard()
    with journal.listening(heard):
        yield heard


async def principal(svc: Services, server: Dovecot | Cyrus, user: str) -> Principal:
    token = base64.b64encode(f"{user}:{server.users[user]}".encode()).decode()
    return await svc.authenticator.authenticate(f"Basic {token}", None)


def dovecot_sessions(dovecot: Dovecot, user: str) -> int:
    """The user's IMAP sessions as Dovecot counts them."""
    out = subprocess.run(
        ["doveadm", "-c", str(dovecot.config), "who", "-1", user],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(1 for line in out.splitlines()[1:] if line.split()[:1] == [user])


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float = TIMEOUT) -> None:
    """Wait until ``check()`` holds (polled; the tests assert on states, never on times)."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def imap(server: Dovecot | Cyrus, user: str, work: Callable[[imaplib.IMAP4], object]) -> None:
    """Run ``work`` in a plain stdlib IMAP session of ``user`` (beside the loop)."""

    def run() -> None:
        client = server.client(user)
        try:
            work(client)
        finally:
            client.logout()

    await asyncio.to_thread(run)


def sent(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every line the gateway sent upstream, IDLE and DONE included, without tags."""
    lines = [
        r.getMessage().removeprefix("upstream <- ")
        for r in caplog.records
        if r.name == "gateway.imap.connection" and r.getMessage().startswith("upstream <- ")
    ]
    return [line.split(" ", 1)[1] if " " in line else line for line in lines]


def idles(caplog: pytest.LogCaptureFixture) -> int:
    """How many IDLE commands the gateway sent."""
    return sent(caplog).count("IDLE")


async def lease_holder(svc: Services, account_id: str) -> str | None:
    """The replica holding the account's watch lease, read from Redis itself."""
    value = await svc.store.client.get(AccountKeys(account_id).push_watch)
    return None if value is None else value.decode().rpartition(":")[0]


def catch_ups(svc: Services) -> float:
    return (
        svc.metrics.registry.get_sample_value(
            "jmap_gateway_push_watch_catchups_total", {"outcome": "ok"}
        )
        or 0.0
    )


def signals_of(svc: Services) -> float:
    return svc.metrics.registry.get_sample_value("jmap_gateway_push_watch_signals_total") or 0.0
