"""What the Identity tests share: a gateway offering sending (its SMTP server down: Identity
sends nothing) and a plain IMAP witness of the METADATA entries the gateway keeps. Their client
naming the submission capability is tests.translators.submitting's."""

from __future__ import annotations

import imaplib
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis

from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import Jmap
from tests.servers import refused_port
from tests.translators.witness import ImapServer

ENTRY_ROOT = "/private/vendor/jmap-gateway/identity"
POLICY = "{address},{local}+*@{domain}"
# Dovecot names entries bare, Cyrus quotes them.
_ENTRY = re.compile(rb'"?(/private/vendor/jmap-gateway/identity/[a-z0-9]+)"? \{(\d+)\}')


@asynccontextmanager
async def sending_gateway(imap_url: str, redis_url: str, **overrides: Any) -> AsyncIterator[str]:
    """A gateway whose SMTP server refuses connections: it must start all the same."""
    with refused_port() as port:
        values = {"mail_domain": "example.com", "identity_addresses": POLICY, **overrides}
        settings = gateway_settings(
            imap_url, redis_url, smtp_url=f"smtp://127.0.0.1:{port}", **values
        )
        async with running_gateway(settings) as url:
            yield url


async def identities(jmap: Jmap) -> dict[str, dict[str, Any]]:
    """Every identity by id (Identity/get with ids null)."""
    return {i["id"]: i for i in (await jmap.call("Identity/get", ids=None))["list"]}


async def state(jmap: Jmap) -> str:
    return str((await jmap.call("Identity/get", ids=[]))["state"])


def flush_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.close()


def metadata_entries(server: ImapServer, user: str) -> dict[str, Any]:
    """The identity entries the IMAP server holds for ``user``, read with a plain stdlib
    client (``GETMETADATA (DEPTH 1) "" (root)``), each value parsed as JSON."""
    conn: imaplib.IMAP4 = server.client(user)
    try:
        status, _ = conn.xatom("GETMETADATA", "(DEPTH 1)", '""', f"({ENTRY_ROOT})")
        assert status == "OK", status
        _, data = conn._untagged_response(status, [None], "METADATA")  # type: ignore[attr-defined]
    finally:
        conn.logout()
    entries: dict[str, Any] = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        match = _ENTRY.search(item[0])
        assert match is not None, item
        entries[match[1].decode().rsplit("/", 1)[1]] = json.loads(item[1])
    return entries


def write_entry(server: ImapServer, user: str, identity_id: str, value: str) -> None:
    """Write an entry as any other IMAP client could (a quoted string: ASCII, one line)."""
    write_entries(server, user, {identity_id: value})


def write_entries(server: ImapServer, user: str, values: dict[str, str]) -> None:
    """Write entries in one plain IMAP session, one SETMETADATA each."""
    conn: imaplib.IMAP4 = server.client(user)
    try:
        for identity_id, value in values.items():
            quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            status, _ = conn.xatom("SETMETADATA", '""', f"({ENTRY_ROOT}/{identity_id} {quoted})")
            assert status == "OK", status
    finally:
        conn.logout()
