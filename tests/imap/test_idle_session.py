"""IdleSession against scripted upstreams on loopback: the misbehaviour a real server will not
produce on demand (floods, refusals, silence after DONE, tagged lines during IDLE)."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gateway.imap.connection import Endpoint, ImapConnection
from gateway.imap.errors import CommandFailed, CommandTimeout, ConnectionLost, ProtocolError
from gateway.imap.responses.unsolicited import MailboxStatus, Overflow, SelectedChanged, Signal

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
GREETING = b"* OK [CAPABILITY IMAP4rev1 IDLE] scripted\r\n"


class Outcomes:
    """An ImapObserver keeping the outcome of each IDLE, as metrics would count it."""

    def __init__(self) -> None:
        self.idle: list[str] = []

    def command(self, verb: str, outcome: str) -> None:
        if verb == "IDLE":
            self.idle.append(outcome)

    def round_trip(self, name: str, seconds: float) -> None:
        pass

    def connect(self, outcome: str) -> None:
        pass


async def upstream(script: Script, **options: object) -> AsyncIterator[ImapConnection]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(GREETING)
        await writer.drain()
        try:
            await script(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = await ImapConnection.open(Endpoint("127.0.0.1", port, "plain", **options))  # type: ignore[arg-type]
    try:
        yield conn
    finally:
        conn.abort()
        server.close()
        await server.wait_closed()


async def expect(reader: asyncio.StreamReader, line: bytes, within: float = 10) -> None:
    assert await asyncio.wait_for(reader.readline(), within) == line


async def test_a_flood_is_coalesced_and_memory_stays_bounded() -> None:
    """12 MB of untagged lines: the session hands out far fewer signals than lines, and what
    Python holds at the peak stays a fraction of the flood (the socket backs up instead)."""
    line = b"* 1 EXISTS\r\n"
    chunk = line * (64 * 1024 // len(line))
    chunks = 12 * 1024 * 1024 // len(chunk)

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await expect(reader, b"G1 IDLE\r\n")
        writer.write(b"+ idling\r\n")
        for _ in range(chunks):
            writer.write(chunk)
            await writer.drain()
        await expect(reader, b"DONE\r\n", within=120)
        writer.write(b"G1 OK Idle completed.\r\n")
        await writer.drain()
        await reader.read()

    signals: list[Signal] = []
    tracemalloc.start()
    try:
        async for conn in upstream(flood):
            async with conn.idle() as session:
                # Until the upstream has been quiet a while: the flood is over.
                while (signal := await session.next(5)) is not None:
                    signals.append(signal)
            _, peak = tracemalloc.get_traced_memory()
            assert conn.usable
    finally:
        tracemalloc.stop()
    assert Overflow() in signals and set(signals) <= {Overflow(), SelectedChanged("EXISTS")}
    assert len(signals) < chunks * len(chunk) // len(line) // 20
    assert peak < 4 * 1024 * 1024, peak  # measured: 1.8 MB


async def test_lines_before_the_continuation_are_the_first_signals() -> None:
    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await expect(reader, b"G1 IDLE\r\n")
        writer.write(b"* 3 EXISTS\r\n* STATUS Other (MESSAGES 2)\r\n+ idling\r\n")
        await expect(reader, b"DONE\r\n")
        writer.write(b"G1 OK done\r\n")
        await reader.read()

    seen = Outcomes()
    async for conn in upstream(early, observer=seen):
        async with conn.idle() as session:
            assert await session.next(5) == SelectedChanged("EXISTS")
            assert await session.next(5) == MailboxStatus("Other", {"MESSAGES": 2})
            assert await session.next(0.05) is None
        assert conn.usable
        with pytest.raises(RuntimeError):
            await session.next(0.05)  # would read the answers of the next command
    assert seen.idle == ["ok"]


async def test_idle_refused_leaves_the_connection_usable() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await expect(reader, b"G1 IDLE\r\n")
        writer.write(b"G1 BAD IDLE not now\r\n")
        await expect(reader, b"G2 NOOP\r\n")
        writer.write(b"G2 OK\r\n")
        await reader.read()

    seen = Outcomes()
    async for conn in upstream(refuse, observer=seen):
        with pytest.raises(CommandFailed, match="not now"):
            async with conn.idle():
                pass
        assert conn.usable
        await conn.noop()
    assert seen.idle == ["bad"]


async def test_unanswered_done_times_out_and_breaks_the_connection() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await expect(reader, b"G1 IDLE\r\n")
        writer.write(b"+ idling\r\n")
        await expect(reader, b"DONE\r\n")
        await reader.read()

    seen = Outcomes()
    async for conn in upstream(silent, command_timeout=0.3, observer=seen):
        with pytest.raises(CommandTimeout):
            async with conn.idle() as session:
                assert await session.next(0.05) is None
        assert conn.broken
    assert seen.idle == ["timeout"]


async def test_a_tagged_response_during_idle_breaks_the_connection() -> None:
    async def confused(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await expect(reader, b"G1 IDLE\r\n")
        writer.write(b"+ idling\r\nG7 OK what\r\n")
        await reader.read()

    seen = Outcomes()
    async for conn in upstream(confused, observer=seen):
        with pytest.raises(ProtocolError):
            async with conn.idle() as session:
                await session.next(5)
        assert conn.broken
    assert seen.idle == ["protocol_error"]


async def test_an_unreadable_line_is_an_overflow_and_the_stream_stays_in_step() -> None:
    async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await expect(reader, b"G1 IDLE\r\n")
        writer.write(b"+ idling\r\n* STATUS Other (MESSAGES lots)\r\n* 4 EXPUNGE\r\n")
        await expect(reader, b"DONE\r\n")
        writer.write(b"G1 OK done\r\n")
        await reader.read()

    seen = Outcomes()
    async for conn in upstream(garbled, observer=seen):
        async with conn.idle() as session:
            assert await session.next(5) == Overflow()
            assert await session.next(5) == SelectedChanged("EXPUNGE")
        assert conn.usable
    assert seen.idle == ["ok"]


async def test_a_cancelled_next_leaves_the_idle_clean() -> None:
    """A watcher cancels next() when told to stop; DONE must still work afterwards."""

    async def patient(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await expect(reader, b"G1 IDLE\r\n")
        writer.write(b"+ idling\r\n")
        await expect(reader, b"DONE\r\n")
        writer.write(b"* 5 EXISTS\r\nG1 OK done\r\n")
        await expect(reader, b"G2 NOOP\r\n")
        writer.write(b"G2 OK\r\n")
        await reader.read()

    seen = Outcomes()
    async for conn in upstream(patient, observer=seen):
        async with conn.idle() as session:
            waiting = asyncio.ensure_future(session.next(None))
            await asyncio.sleep(0.1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        assert conn.usable
        await conn.noop()
    assert seen.idle == ["ok"]


@pytest.mark.parametrize(
    ("last", "error"), [(b"* BYE going away", ConnectionLost), (b"G9 OK what", ProtocolError)]
)
async def test_a_burst_cannot_hide_a_bye_or_a_tagged_line(
    last: bytes, error: type[Exception]
) -> None:
    async def burst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await expect(reader, b"G1 IDLE\r\n")
        writer.write(b"+ idling\r\n" + b"* 1 EXISTS\r\n" * 200 + last + b"\r\n")
        await reader.read()

    async for conn in upstream(burst):
        with pytest.raises(error):
            async with conn.idle() as session:
                await session.next(5)
        assert conn.broken
