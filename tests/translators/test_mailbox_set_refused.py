"""Mailbox/set when Dovecot refuses with a response code: another client deleted the mailbox
between the gateway's catch-up and its DELETE or RENAME, and Dovecot answers
``NO [NONEXISTENT]`` (RFC 5530). The object fails as notFound
(gateway.translators.upstream_refusals), the rest of the call goes on, and the client never
sees the server's own words.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.faultproxy import FaultProxy
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import Mail, ok
from tests.translators.proxied import jmap, proxy

__all__ = ["jmap", "proxy"]

GONE = {"type": "notFound", "description": "the mailbox no longer exists upstream"}


async def refused_meanwhile(
    jmap: Jmap, dovecot: Dovecot, proxy: FaultProxy, command: bytes, args: dict[str, Any]
) -> dict[str, Any]:
    """Mailbox/set with ``args``, while a plain client deletes "Gone" just before the
    gateway's ``command`` reaches Dovecot."""
    held = proxy.hold(command)
    call = asyncio.create_task(jmap.call("Mailbox/set", **args))
    async with asyncio.timeout(30):
        await held.reached.wait()
    mail = Mail(dovecot, jmap.username)
    try:
        ok(mail.imap.delete('"Gone"'))
    finally:
        mail.close()
    held.release()
    async with asyncio.timeout(30):
        return await call


def folders(dovecot: Dovecot, user: str) -> set[str]:
    mail = Mail(dovecot, user)
    try:
        listed = ok(mail.imap.list())
    finally:
        mail.close()
    return {line.decode().rsplit(' "/" ', 1)[1].strip('"') for line in listed}


async def test_destroying_a_mailbox_deleted_meanwhile_is_not_found(
    jmap: Jmap, dovecot: Dovecot, proxy: FaultProxy
) -> None:
    mail = Mail(dovecot, jmap.username)
    mail.create("Gone", "Kept")
    mail.close()
    boxes = await jmap.mailboxes()
    gone, kept = boxes["Gone"]["id"], boxes["Kept"]["id"]
    result = await refused_meanwhile(
        jmap, dovecot, proxy, rb" DELETE \"?Gone", {"destroy": [gone, kept]}
    )
    assert result["notDestroyed"] == {gone: GONE}
    assert result["destroyed"] == [kept]
    assert not {"Gone", "Kept"} & folders(dovecot, jmap.username)


async def test_renaming_a_mailbox_deleted_meanwhile_is_not_found(
    jmap: Jmap, dovecot: Dovecot, proxy: FaultProxy
) -> None:
    mail = Mail(dovecot, jmap.username)
    mail.create("Gone")
    mail.close()
    gone = (await jmap.mailboxes())["Gone"]["id"]
    result = await refused_meanwhile(
        jmap, dovecot, proxy, rb" RENAME ", {"update": {gone: {"name": "Renamed"}}}
    )
    assert result["notUpdated"] == {gone: GONE}
    assert not {"Gone", "Renamed"} & folders(dovecot, jmap.username)
