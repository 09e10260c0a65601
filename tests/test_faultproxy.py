"""The fault-injecting IMAP proxy against the real Dovecot: it relays IMAP faithfully (literals
in both directions, pipelining) and breaks a connection exactly before or after a command."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from gateway.imap.commands import Command, literal, mailbox
from gateway.imap.connection import Endpoint, ImapConnection
from gateway.imap.errors import ConnectionLost
from tests.faultproxy import FaultProxy
from tests.servers import LOOPBACK, Dovecot, refused_port

TIMEOUT = 10
# Message content that looks like IMAP to a careless parser: a command the faults below match,
# a tagged completion, and a literal marker whose octets never come.
TRAP = (
    b"a4 UID STORE 1 +FLAGS (\\Flagged)\r\nZ9 OK UID FETCH completed\r\na5 APPEND INBOX {99999}\r\n"
)
MESSAGE = (
    b"From: Fault Proxy <proxy@example.org>\r\n"
    b"To: test@example.com\r\n"
    b"Subject: looks like IMAP\r\n"
    b"\r\n" + TRAP + b"The end.\r\n"
)


@dataclass
class Account:
    dovecot: Dovecot
    user: str
    password: str
    folder: str

    def witness(self) -> imaplib.IMAP4:
        return self.dovecot.client(self.user)

    def append(self, message: bytes = MESSAGE) -> None:
        conn = self.witness()
        try:
            assert conn.append(self.folder, "", None, message)[0] == "OK"
        finally:
            conn.logout()

    def flags(self, uid: int = 1) -> str:
        conn = self.witness()
        try:
            assert conn.select(self.folder, readonly=True)[0] == "OK"
            status, data = conn.uid("FETCH", str(uid), "(FLAGS)")
            assert status == "OK" and data and isinstance(data[0], bytes), data
            return data[0].decode()
        finally:
            conn.logout()

    def messages(self) -> list[bytes]:
        conn = self.witness()
        try:
            assert conn.select(self.folder, readonly=True)[0] == "OK"
            status, data = conn.uid("FETCH", "1:*", "(BODY.PEEK[])")
            assert status == "OK"
            return [item[1] for item in data if isinstance(item, tuple)]
        finally:
            conn.logout()


def _create(dovecot: Dovecot, user: str, folder: str) -> None:
    conn = dovecot.client(user)
    try:
        assert conn.create(folder)[0] == "OK"
    finally:
        conn.logout()


def _delete(dovecot: Dovecot, user: str, folder: str) -> None:
    conn = dovecot.client(user)
    try:
        conn.delete(folder)
    finally:
        conn.logout()


@pytest.fixture
async def account(dovecot: Dovecot) -> AsyncIterator[Account]:
    """A fresh user of the shared Dovecot with a folder of the test's own (removed after)."""
    user = dovecot.fresh_user()
    folder = "fp-" + secrets.token_hex(4)
    await asyncio.to_thread(_create, dovecot, user, folder)
    yield Account(dovecot, user, dovecot.users[user], folder)
    await asyncio.to_thread(_delete, dovecot, user, folder)


@pytest.fixture
async def proxy(dovecot: Dovecot) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(LOOPBACK, dovecot.imap_port) as proxy:
        yield proxy


class Raw:
    """A bare IMAP client that sends exactly the bytes it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.last = b""  # the last tagged completion read

    @classmethod
    async def connect(cls, proxy: FaultProxy) -> Raw:
        reader, writer = await asyncio.open_connection(LOOPBACK, proxy.port)
        raw = cls(reader, writer)
        async with asyncio.timeout(TIMEOUT):
            assert (await reader.readline()).startswith(b"* OK")
        return raw

    async def login(self, account: Account) -> None:
        await self.send(f'l1 LOGIN {account.user} "{account.password}"\r\n'.encode())
        await self.response(b"l1")
        assert self.last.startswith(b"l1 OK")
        await self.send(f"l2 SELECT {account.folder}\r\n".encode())
        await self.response(b"l2")
        assert self.last.startswith(b"l2 OK")

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, tag: bytes) -> bytes:
        """Everything up to and including the tagged completion of ``tag`` (literals honoured);
        raise EOFError if the connection closes first."""
        received = b""
        async with asyncio.timeout(TIMEOUT):
            while True:
                line = await self.reader.readline()
                if not line:
                    raise EOFError(received)
                received += line
                while match := re.search(rb"\{(\d+)\}\r\n\Z", line):
                    received += await self.reader.readexactly(int(match.group(1)))
                    line = await self.reader.readline()
                    received += line
                if line.startswith(tag + b" "):
                    self.last = line
                    return received

    async def until_closed(self) -> bytes:
        """Everything the proxy still sends before it closes the connection."""
        async with asyncio.timeout(TIMEOUT):
            return await self.reader.read()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def test_imaplib_relay_keeps_literal_content_and_hides_passwords(
    proxy: FaultProxy, account: Account
) -> None:
    proxy.cut(rb"UID STORE", when="before")

    def session() -> list[bytes]:
        conn = imaplib.IMAP4(LOOPBACK, proxy.port)
        try:
            conn.login(account.user, account.password)
            assert conn.select(account.folder)[0] == "OK"
            # The literal holds a line that matches the armed fault: it must not trigger.
            assert conn.append(account.folder, "(\\Seen)", None, MESSAGE)[0] == "OK"
            status, data = conn.uid("FETCH", "1", "(BODY.PEEK[])")
            assert status == "OK"
            return [item[1] for item in data if isinstance(item, tuple)]
        finally:
            conn.logout()

    assert await asyncio.to_thread(session) == [MESSAGE]
    assert proxy.cuts == 0
    assert await asyncio.to_thread(account.messages) == [MESSAGE]
    commands = proxy.commands()
    names = [command.split(b" ")[1].upper() for command in commands]
    assert names[-5:] == [b"LOGIN", b"SELECT", b"APPEND", b"UID", b"LOGOUT"]
    append = next(command for command in commands if b" APPEND " in command)
    assert append.endswith(b"{%d}" % len(MESSAGE))
    assert not any(b"STORE" in command for command in commands)
    assert not any(account.password.encode() in command for command in commands)
    assert any(command.endswith(b" LOGIN ***") for command in commands)


async def test_literals_both_ways_and_pipelining(proxy: FaultProxy, account: Account) -> None:
    proxy.cut(rb"STORE", when="before")
    raw = await Raw.connect(proxy)
    await raw.login(account)
    folder = account.folder.encode()
    # Pipelined: a non-synchronising literal (LITERAL+), a SELECT (so that the session sees
    # the new message), then a FETCH whose response literal holds what looks like a tagged
    # completion and a literal marker.
    await raw.send(
        b"a1 APPEND " + folder + b" {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n"
        b"a2 SELECT " + folder + b"\r\n"
        b"Z9 UID FETCH 1 (BODY.PEEK[])\r\n"
    )
    await raw.response(b"a1")
    assert raw.last.startswith(b"a1 OK")
    await raw.response(b"a2")
    fetched = await raw.response(b"Z9")
    assert raw.last.startswith(b"Z9 OK") and MESSAGE in fetched
    # A synchronising literal waits for the server's continuation, relayed by the proxy.
    await raw.send(b"a3 APPEND " + folder + b" {%d}\r\n" % len(MESSAGE))
    async with asyncio.timeout(TIMEOUT):
        assert (await raw.reader.readline()).startswith(b"+")
    await raw.send(MESSAGE + b"\r\n")
    await raw.response(b"a3")
    assert raw.last.startswith(b"a3 OK")
    await raw.close()
    assert proxy.cuts == 0
    assert await asyncio.to_thread(account.messages) == [MESSAGE, MESSAGE]
    assert [c.split(b" ", 1)[0] for c in proxy.commands()] == [
        b"l1",
        b"l2",
        b"a1",
        b"a2",
        b"Z9",
        b"a3",
    ]


async def test_cut_before_never_reaches_the_server(proxy: FaultProxy, account: Account) -> None:
    await asyncio.to_thread(account.append)
    raw = await Raw.connect(proxy)
    await raw.login(account)
    proxy.cut(rb"UID STORE \S+ \+FLAGS", when="before")
    await raw.send(b"a3 UID STORE 1 +FLAGS (\\Flagged)\r\n")
    assert await raw.until_closed() == b""
    await raw.close()
    assert proxy.cuts == 1
    assert proxy.commands()[-1] == b"a3 UID STORE 1 +FLAGS (\\Flagged)"
    assert "\\Flagged" not in await asyncio.to_thread(account.flags)


async def test_cut_after_applies_but_hides_the_completion(
    proxy: FaultProxy, account: Account
) -> None:
    await asyncio.to_thread(account.append)
    raw = await Raw.connect(proxy)
    await raw.login(account)
    proxy.cut(rb"uid store", when="after")  # bytes patterns ignore case
    await raw.send(b"a3 UID STORE 1 +FLAGS (\\Flagged)\r\n")
    rest = await raw.until_closed()
    await raw.close()
    assert b"* 1 FETCH" in rest  # untagged responses are relayed ...
    assert b"a3 " not in rest  # ... the tagged completion is not
    assert proxy.cuts == 1
    assert "\\Flagged" in await asyncio.to_thread(account.flags)


async def test_cut_after_holds_pipelined_commands(proxy: FaultProxy, account: Account) -> None:
    await asyncio.to_thread(account.append)
    raw = await Raw.connect(proxy)
    await raw.login(account)
    proxy.cut(re.compile(rb"\\Flagged"), when="after")
    await raw.send(
        b"a3 NOOP\r\na4 UID STORE 1 +FLAGS (\\Flagged)\r\na5 UID STORE 1 +FLAGS (\\Answered)\r\n"
    )
    await raw.response(b"a3")
    rest = await raw.until_closed()
    await raw.close()
    assert b"a4 " not in rest and b"a5 " not in rest
    flags = await asyncio.to_thread(account.flags)
    assert "\\Flagged" in flags and "\\Answered" not in flags
    assert proxy.cuts == 1


async def test_cut_after_waits_past_literal_lookalikes(proxy: FaultProxy, account: Account) -> None:
    """The fetched message holds ``Z9 OK ...`` and ``{99999}``: neither is the completion."""
    await asyncio.to_thread(account.append)
    raw = await Raw.connect(proxy)
    await raw.login(account)
    proxy.cut(rb"UID FETCH", when="after")
    await raw.send(b"Z9 UID FETCH 1 (BODY.PEEK[])\r\n")
    rest = await raw.until_closed()
    await raw.close()
    assert rest.startswith(b"* 1 FETCH") and rest.endswith(MESSAGE + b")\r\n")
    assert proxy.cuts == 1


async def test_times_cuts_and_clear(proxy: FaultProxy, account: Account) -> None:
    proxy.cut(rb"^\S+ NOOP", when="before", times=2)
    outcomes = []
    for _ in range(3):
        raw = await Raw.connect(proxy)
        await raw.login(account)
        await raw.send(b"n1 NOOP\r\n")
        try:
            await raw.response(b"n1")
            outcomes.append("ok")
        except EOFError:
            outcomes.append("cut")
        await raw.close()
    assert outcomes == ["cut", "cut", "ok"]
    assert proxy.cuts == 2
    assert proxy.commands().count(b"n1 NOOP") == 3

    proxy.cut(rb"NOOP", when="after")
    proxy.clear()
    assert proxy.cuts == 0 and proxy.commands() == []
    raw = await Raw.connect(proxy)
    await raw.login(account)
    await raw.send(b"n2 NOOP\r\n")
    await raw.response(b"n2")
    await raw.close()
    assert proxy.cuts == 0


async def test_a_cut_breaks_only_its_own_connection(proxy: FaultProxy, account: Account) -> None:
    first, second = await Raw.connect(proxy), await Raw.connect(proxy)
    await first.login(account)
    await second.login(account)
    proxy.cut(rb"NOOP", when="before")
    await first.send(b"n1 NOOP\r\n")
    assert await first.until_closed() == b""
    await second.send(b"n2 NOOP\r\n")
    await second.response(b"n2")
    assert second.last.startswith(b"n2 OK")
    for raw in (first, second):
        await raw.close()


async def test_hold_keeps_a_command_from_the_server_until_released(
    proxy: FaultProxy, account: Account
) -> None:
    await asyncio.to_thread(account.append)
    first, second = await Raw.connect(proxy), await Raw.connect(proxy)
    await first.login(account)
    await second.login(account)
    hold = proxy.hold(rb"UID STORE")
    await first.send(b"a3 UID STORE 1 +FLAGS (\\Flagged)\r\n")
    async with asyncio.timeout(TIMEOUT):
        await hold.reached.wait()
    # Held: the server has not seen it, and other connections go on.
    await second.send(b"n1 NOOP\r\n")
    await second.response(b"n1")
    assert "\\Flagged" not in await asyncio.to_thread(account.flags)
    hold.release()
    await first.response(b"a3")
    assert first.last.startswith(b"a3 OK")
    assert "\\Flagged" in await asyncio.to_thread(account.flags)
    for raw in (first, second):
        await raw.close()


async def test_stop_closes_open_relays(dovecot: Dovecot, account: Account) -> None:
    proxy = FaultProxy(LOOPBACK, dovecot.imap_port)
    await proxy.start()
    assert proxy.url == f"imap://{LOOPBACK}:{proxy.port}"
    raw = await Raw.connect(proxy)
    await raw.login(account)
    await proxy.stop()
    assert await raw.until_closed() == b""
    await raw.close()
    with pytest.raises(OSError):
        await asyncio.open_connection(LOOPBACK, proxy.port)


async def test_upstream_down_closes_the_client() -> None:
    with refused_port() as nowhere:
        async with FaultProxy(LOOPBACK, nowhere) as proxy:
            reader, writer = await asyncio.open_connection(LOOPBACK, proxy.port)
            async with asyncio.timeout(TIMEOUT):
                assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()


async def test_gateway_connection_through_the_proxy(proxy: FaultProxy, account: Account) -> None:
    """The gateway's own client logs in (AUTHENTICATE PLAIN with SASL-IR, kept secret) and
    sees an "after" cut as a lost connection."""
    conn = await ImapConnection.open(Endpoint(LOOPBACK, proxy.port, "plain"))
    try:
        await conn.login(account.user, account.password)
        await conn.select(account.folder)
        proxy.cut(rb" NOOP\Z", when="after")
        with pytest.raises(ConnectionLost):
            await conn.noop()
    finally:
        await conn.logout()
    assert proxy.cuts == 1
    commands = proxy.commands()
    assert any(re.fullmatch(rb"\S+ AUTHENTICATE PLAIN \*\*\*", c) for c in commands), commands
    assert commands[-1].endswith(b" NOOP")


async def test_gateway_append_with_literal(proxy: FaultProxy, account: Account) -> None:
    conn = await ImapConnection.open(Endpoint(LOOPBACK, proxy.port, "plain"))
    try:
        await conn.login(account.user, account.password)
        proxy.cut(rb"STORE", when="before")
        await conn.execute(Command("APPEND", mailbox(account.folder), literal(MESSAGE)))
    finally:
        await conn.logout()
    assert proxy.cuts == 0
    assert await asyncio.to_thread(account.messages) == [MESSAGE]
