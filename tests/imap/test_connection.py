"""The upstream connection against a real Dovecot: TLS modes, login, capabilities, selection."""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import struct

import pytest

from gateway.imap.commands import Command
from gateway.imap.connection import Endpoint, ImapConnection
from gateway.imap.errors import (
    AuthenticationFailed,
    CommandFailed,
    CommandTimeout,
    ConnectionLost,
    UpstreamUnavailable,
)
from gateway.imap.responses.list import parse_list
from tests.imap.upstream import endpoint, logged_in, signal_imap
from tests.servers import Dovecot, refused_port


def trusting(dovecot: Dovecot) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(dovecot.cert))


async def test_plain_login_learns_post_login_capabilities(dovecot: Dovecot) -> None:
    conn = await ImapConnection.open(endpoint(dovecot))
    assert "AUTH=PLAIN" in conn.capabilities and "CONDSTORE" not in conn.capabilities
    await conn.login("alice", dovecot.users["alice"])
    assert {"CONDSTORE", "QRESYNC", "MOVE", "UIDPLUS", "SPECIAL-USE"} <= conn.capabilities
    await conn.logout()
    assert not conn.usable


async def test_starttls_verifies_and_refreshes_capabilities(dovecot: Dovecot) -> None:
    conn = await logged_in(dovecot, tls="starttls", ssl_context=trusting(dovecot))
    assert conn.writer.get_extra_info("ssl_object") is not None
    assert "STARTTLS" not in conn.capabilities
    await conn.noop()
    await conn.logout()


async def test_implicit_tls(dovecot: Dovecot) -> None:
    conn = await logged_in(
        dovecot, tls="implicit", port=dovecot.imaps_port, ssl_context=trusting(dovecot)
    )
    assert conn.writer.get_extra_info("ssl_object") is not None
    await conn.logout()


async def test_untrusted_certificate_is_refused(dovecot: Dovecot) -> None:
    with pytest.raises(UpstreamUnavailable):
        await ImapConnection.open(
            endpoint(
                dovecot,
                tls="implicit",
                port=dovecot.imaps_port,
                ssl_context=ssl.create_default_context(),
            )
        )


async def test_wrong_password(dovecot: Dovecot) -> None:
    conn = await ImapConnection.open(endpoint(dovecot))
    with pytest.raises(AuthenticationFailed) as caught:
        await conn.login("alice", "not-her-password")
    assert "not-her-password" not in str(caught.value)
    await conn.logout()


async def test_a_reset_is_a_lost_connection(dovecot: Dovecot) -> None:
    """Dovecot resets a connection whose login line passes 8 KiB: the socket's error becomes
    the IMAP layer's own ConnectionLost, which callers map to serverUnavailable."""
    conn = await ImapConnection.open(endpoint(dovecot))
    with pytest.raises(ConnectionLost):
        await conn.login("alice", "p" * 8000)
    assert not conn.usable
    await conn.logout()


async def test_nothing_listening(dovecot: Dovecot) -> None:
    with refused_port() as nowhere, pytest.raises(UpstreamUnavailable):
        await ImapConnection.open(endpoint(dovecot, port=nowhere))


async def test_select_is_not_repeated(dovecot: Dovecot) -> None:
    conn = await logged_in(dovecot)
    state = await conn.select("INBOX")
    sent = conn.commands_sent
    assert await conn.select("INBOX") is state
    assert conn.commands_sent == sent
    await conn.select("INBOX", read_only=True)
    assert conn.commands_sent == sent + 1
    assert conn.selected is not None and conn.selected.read_only
    await conn.select("Sent")
    assert conn.selected is not None and conn.selected.name == "Sent"
    await conn.logout()


async def test_failed_select_forgets_the_selection(dovecot: Dovecot) -> None:
    conn = await logged_in(dovecot)
    await conn.select("INBOX")
    with pytest.raises(CommandFailed):
        await conn.select("No such folder")
    assert conn.selected is None
    assert conn.usable
    await conn.logout()


async def test_quoted_strings_with_star_space_survive(dovecot: Dovecot) -> None:
    """aioimaplib would turn this name into "ab" by removing every '* '."""
    witness = dovecot.client("alice")
    witness.create('"a * b"')
    witness.logout()
    conn = await logged_in(dovecot)
    result = await conn.execute(Command("LIST", '""', '"a *"'))
    names = [parse_list(r).name for r in result.data("LIST")]
    assert names == ["a * b"]
    await conn.logout()


async def test_enable_reports_what_took(dovecot: Dovecot) -> None:
    conn = await logged_in(dovecot)
    assert await conn.enable("QRESYNC", "NO-SUCH-EXTENSION") == frozenset({"QRESYNC"})
    await conn.logout()


async def test_stalled_upstream_times_out_and_breaks_the_connection(
    private_dovecot: Dovecot,
) -> None:
    conn = await logged_in(private_dovecot, command_timeout=0.5)
    assert signal_imap(private_dovecot, "alice", signal.SIGSTOP) == 1
    try:
        with pytest.raises(CommandTimeout):
            await conn.noop()
        assert not conn.usable
        with pytest.raises(ConnectionLost):
            await conn.noop()
    finally:
        signal_imap(private_dovecot, "alice", signal.SIGCONT)


async def test_upstream_gone_is_noticed(private_dovecot: Dovecot) -> None:
    conn = await logged_in(private_dovecot)
    signal_imap(private_dovecot, "alice", signal.SIGKILL)
    await asyncio.sleep(0.2)
    assert not conn.usable
    with pytest.raises(ConnectionLost):
        await conn.noop()
    await conn.logout()


async def test_reset_mid_command_is_a_lost_connection() -> None:
    """A server that resets the connection (as Dovecot does after the BYE that ends a session
    whose selected mailbox was deleted) is upstream trouble, not a socket error for callers."""

    async def reset_at_first_command(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
        await writer.drain()
        await reader.readline()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    server = await asyncio.start_server(reset_at_first_command, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        conn = await ImapConnection.open(Endpoint(host="127.0.0.1", port=port, tls="plain"))
        with pytest.raises(ConnectionLost):
            await conn.noop()
        assert conn.broken
    finally:
        server.close()
        await server.wait_closed()


async def test_cancelled_command_breaks_the_connection(private_dovecot: Dovecot) -> None:
    conn = await logged_in(private_dovecot)
    signal_imap(private_dovecot, "alice", signal.SIGSTOP)
    try:
        task = asyncio.create_task(conn.noop())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert conn.broken
    finally:
        signal_imap(private_dovecot, "alice", signal.SIGCONT)
        await conn.logout()


async def test_small_writes_are_not_delayed(dovecot: Dovecot) -> None:
    """Nagle plus delayed ACKs stall small commands ~40 ms (../shared/harness, section 6)."""
    conn = await logged_in(dovecot)
    sock = conn.writer.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    await conn.logout()


async def test_pipelined_commands_share_one_round_trip(dovecot: Dovecot) -> None:
    conn = await logged_in(dovecot, dovecot.fresh_user())
    await conn.select("INBOX", read_only=True)
    trips, sent = conn.round_trips, conn.commands_sent
    noop, listed = await conn.execute_pipelined(Command("NOOP"), Command("LIST", '""', "INBOX"))
    assert noop.tagged.status == "OK" and len(listed.data("LIST")) == 1
    assert (conn.round_trips - trips, conn.commands_sent - sent) == (1, 2)
    result = await conn.execute_unselected(Command("LIST", '""', "INBOX"))
    assert conn.selected is None and len(result.data("LIST")) == 1
    assert (conn.round_trips - trips, conn.commands_sent - sent) == (2, 4)
    with pytest.raises(CommandFailed):
        await conn.execute_pipelined(Command("NOOP"), Command("SELECT", "no-such-folder"))
    await conn.noop()  # the stream is still in step after a failed pipelined command
    await conn.logout()
