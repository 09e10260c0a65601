"""Helpers for tests that talk to the real Dovecot through the gateway's connection code."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from gateway.imap.connection import Endpoint, ImapConnection
from tests.servers import LOOPBACK, Dovecot


def endpoint(dovecot: Dovecot, **options: object) -> Endpoint:
    values: dict[str, object] = {"host": LOOPBACK, "port": dovecot.imap_port, "tls": "plain"}
    values.update(options)
    return Endpoint(**values)  # type: ignore[arg-type]


async def logged_in(dovecot: Dovecot, user: str = "alice", **options: object) -> ImapConnection:
    conn = await ImapConnection.open(endpoint(dovecot, **options))
    await conn.login(user, dovecot.users[user])
    return conn


def imap_processes(dovecot: Dovecot, user: str) -> list[int]:
    """Pids of Dovecot's imap processes serving ``user`` (their title names the user)."""
    master = int(dovecot.pidfile.read_text().strip())
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == master and "/imap [" in cmdline and f"[{user} " in cmdline:
            pids.append(int(entry.name))
    return pids


def signal_imap(dovecot: Dovecot, user: str, sig: signal.Signals) -> int:
    pids = imap_processes(dovecot, user)
    for pid in pids:
        os.kill(pid, sig)
    return len(pids)
