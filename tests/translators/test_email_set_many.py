"""Email/set on thousands of emails in one call (issue 16 item 7): the upstream gets a few
bounded UID STOREs, the server ends up as asked (read back with a plain imaplib session), and
the index agrees with the server email by email."""

from __future__ import annotations

import imaplib
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import KEY, ok
from tests.upstream_log import upstream_commands

KEY_PROPERTY = f"header:{KEY}:asText"
# Two of every three messages of the INBOX are changed, so their UIDs make runs of two: the
# compact UID set ("1:2,4:5,...") is ~9,000 octets and has to be split over several commands.
MESSAGES = 3000
CHANGED = 2000
# RFC 7162 4: a client should keep its command lines to about 8192 octets.
LINE_LIMIT = 8192
_FETCHED = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\).*X-Test-Key: (\w+)", re.DOTALL)
_STORE = re.compile(r"UID STORE ([0-9:,]+) ([+-]?)FLAGS \(([^)]*)\)")


@dataclass
class Inbox:
    """The seeded INBOX: each key's UID, and each key's email id as the gateway names it."""

    uids: dict[str, int]
    ids: dict[str, str]


def message(key: str) -> bytes:
    """A small message carrying ``key`` (built from a template: the email package takes
    over a millisecond per message, too slow for thousands)."""
    return (
        f"From: Ann <ann@example.org>\r\nTo: bob@example.org\r\nSubject: message {key}\r\n"
        f"Message-ID: <{key}@example.org>\r\n{KEY}: {key}\r\n\r\nhello\r\n"
    ).encode()


def multiappend(imap: imaplib.IMAP4, folder: str, messages: list[bytes], per_command: int) -> None:
    """APPEND many messages in few commands (MULTIAPPEND, RFC 3502, with LITERAL+
    literals, RFC 7888): one APPEND per message costs ~10 ms on the test Dovecot."""
    for number, start in enumerate(range(0, len(messages), per_command)):
        tag = f"M{number}".encode()
        command = [tag + b" APPEND " + folder.encode()]
        for raw in messages[start : start + per_command]:
            command.append(b" {%d+}\r\n" % len(raw) + raw)
        imap.send(b"".join(command) + b"\r\n")
        while not (line := imap.readline()).startswith(tag + b" "):
            pass
        assert line.startswith(tag + b" OK"), line


def expand(uid_set: str) -> list[int]:
    """The UIDs of a sequence set such as ``1:2,4`` (RFC 3501 9)."""
    uids: list[int] = []
    for piece in uid_set.split(","):
        low, _, high = piece.partition(":")
        uids.extend(range(int(low), int(high or low) + 1))
    return uids


def server_flags(imap: imaplib.IMAP4) -> dict[str, set[str]]:
    """Each key's flags in the INBOX, as the server holds them now."""
    ok(imap.select("INBOX", readonly=True))
    data = ok(imap.uid("FETCH", "1:*", f"(FLAGS BODY.PEEK[HEADER.FIELDS ({KEY})])"))
    flags: dict[str, set[str]] = {}
    for item in data:
        if isinstance(item, tuple):
            found = _FETCHED.search(item[0] + item[1])
            assert found, item
            flags[found.group(3).decode()] = set(found.group(2).decode().split())
    return flags


@pytest.fixture
async def jmap(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Jmap]:
    """A gateway taking up to MESSAGES objects in one /set, and a fresh user's client."""
    settings = gateway_settings(dovecot.url, redis_url, max_objects_in_set=MESSAGES)
    async with (
        running_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=120) as http,
    ):
        user = dovecot.fresh_user()
        yield await Jmap(http, user, dovecot.users[user]).start()


@pytest.fixture
def imap(dovecot: Dovecot, jmap: Jmap) -> Iterator[imaplib.IMAP4]:
    client = dovecot.client(jmap.username)
    yield client
    client.logout()


@pytest.fixture
async def inbox(jmap: Jmap, imap: imaplib.IMAP4) -> Inbox:
    multiappend(imap, "INBOX", [message(f"k{n}") for n in range(MESSAGES)], per_command=250)
    ok(imap.select("INBOX", readonly=True))
    uids: dict[str, int] = {}
    for item in ok(imap.uid("FETCH", "1:*", f"(BODY.PEEK[HEADER.FIELDS ({KEY})])")):
        if isinstance(item, tuple):
            uid = re.search(rb"UID (\d+)", item[0])
            key = re.search(rb"X-Test-Key: (\w+)", item[1])
            assert uid and key, item
            uids[key.group(1).decode()] = int(uid.group(1))
    return Inbox(uids, await email_ids(jmap))


async def email_ids(jmap: Jmap) -> dict[str, str]:
    ids: dict[str, str] = {}
    position = 0
    while found := (await jmap.call("Email/query", position=position, limit=500))["ids"]:
        got = await jmap.call("Email/get", ids=found, properties=[KEY_PROPERTY])
        ids.update({e[KEY_PROPERTY]: e["id"] for e in got["list"]})
        position += len(found)
    return ids


async def indexed_keywords(jmap: Jmap, ids: list[str]) -> dict[str, dict[str, bool]]:
    keywords: dict[str, dict[str, bool]] = {}
    for start in range(0, len(ids), 500):
        got = await jmap.call("Email/get", ids=ids[start : start + 500], properties=["keywords"])
        assert got["notFound"] == []
        keywords.update({e["id"]: e["keywords"] for e in got["list"]})
    return keywords


async def test_two_thousand_of_three_thousand_marked_read_and_unread_in_one_call_each(
    jmap: Jmap, imap: imaplib.IMAP4, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(inbox.ids) == MESSAGES
    changed = [f"k{n}" for n in range(MESSAGES) if n % 3 != 2]
    assert len(changed) == CHANGED
    by_key = {key: inbox.ids[key] for key in changed}
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    for value, flag in ((True, "+"), (None, "-")):
        upstream_commands(caplog)

        result = await jmap.call(
            "Email/set",
            update={email_id: {"keywords/$seen": value} for email_id in by_key.values()},
        )

        assert result["updated"] == dict.fromkeys(by_key.values())
        assert not result["notUpdated"]
        # Bounded commands that together name exactly the changed messages, each once.
        stores = [found for c in upstream_commands(caplog) if (found := _STORE.search(c))]
        assert len(stores) >= 2, stores
        assert all(len(store.group(0)) <= LINE_LIMIT for store in stores)
        assert {(store.group(2), store.group(3)) for store in stores} == {(flag, "\\Seen")}
        sent = [uid for store in stores for uid in expand(store.group(1))]
        assert sorted(sent) == sorted(inbox.uids[key] for key in changed)
        # The server, read with a plain IMAP session.
        seen = {key for key, flags in server_flags(imap).items() if "\\Seen" in flags}
        assert seen == (set(changed) if value else set())
        # The index agrees, email by email, and so do the counts.
        keywords = await indexed_keywords(jmap, list(inbox.ids.values()))
        assert {key for key, i in inbox.ids.items() if keywords[i].get("$seen")} == seen
        mailboxes = await jmap.call("Mailbox/get", ids=None, properties=["role", "unreadEmails"])
        (unread,) = [m["unreadEmails"] for m in mailboxes["list"] if m["role"] == "inbox"]
        assert unread == MESSAGES - len(seen)
