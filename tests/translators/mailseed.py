"""The mail corpus in a user's INBOX, appended and read back by the stdlib IMAP client.

The ground truth of a test is computed on the octets the server gives back, not on
``tests.mailcorpus.CORPUS``: a server may rewrite a message on APPEND (Cyrus replaces
8-bit header octets), and the gateway can only report what the server holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tests.jmapclient import Jmap
from tests.mailcorpus import CORPUS, INTERNALDATES
from tests.translators.witness import ImapServer

KEY_PROPERTY = "header:X-Corpus-Key:asText"
_UID = re.compile(rb"\bUID (\d+)")
_KEY = re.compile(rb"^X-Corpus-Key: ([A-Za-z0-9_]+)\r\n")


def _ok(result: tuple[str, Any]) -> Any:
    assert result[0] == "OK", result
    return result[1]


def append(
    server: ImapServer, user: str, messages: Mapping[str, bytes], folder: str = "INBOX"
) -> None:
    """APPEND ``messages`` (key -> raw message) to ``folder``, in order.

    A corpus key gets its INTERNALDATES entry; other messages get the server's clock.
    """
    imap = server.client(user)
    try:
        for key, raw in messages.items():
            date = INTERNALDATES.get(key)
            _ok(imap.append(f'"{folder}"', None, None if date is None else f'"{date}"', raw))
    finally:
        imap.logout()


def stored_messages(server: ImapServer, user: str) -> dict[str, bytes]:
    """Corpus key -> the octets of that message as ``UID FETCH n BODY.PEEK[]`` returns them."""
    imap = server.client(user)
    try:
        _ok(imap.select("INBOX", readonly=True))
        data = _ok(imap.uid("FETCH", "1:*", "(UID BODY.PEEK[])"))
    finally:
        imap.logout()
    stored: dict[str, bytes] = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        prefix, body = item
        assert _UID.search(prefix), prefix
        key = _KEY.match(body)
        assert key is not None, body[:80]
        stored[key[1].decode()] = body
    return stored


def seed(server: ImapServer, user: str, messages: Mapping[str, bytes] = CORPUS) -> dict[str, bytes]:
    """APPEND ``messages`` (the corpus by default) to INBOX and return them as stored.

    Every message must start with ``X-Corpus-Key: <key>``, its key in ``messages``.
    """
    append(server, user, messages)
    stored = stored_messages(server, user)
    assert set(messages) <= set(stored)
    return {key: stored[key] for key in messages}


async def email_ids(jmap: Jmap) -> dict[str, str]:
    """Corpus key -> email id, from Email/get of every email (ids null)."""
    listed = await jmap.call("Email/get", ids=None, properties=[KEY_PROPERTY])
    ids: dict[str, str] = {}
    for email in listed["list"]:
        key = email[KEY_PROPERTY]
        assert isinstance(key, str) and key not in ids, email
        ids[key] = email["id"]
    return ids
