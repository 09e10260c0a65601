"""A TCP proxy between an IMAP client (the gateway) and a real IMAP server that breaks the
connection at a chosen command, for tests of multi-step changes that fail half way.

The proxy follows the IMAP framing in both directions (RFC 9051 section 4.3: a line ending in
``{n}``, ``{n+}``, ``{n-}`` or ``~{n}`` is followed by exactly n literal octets), so literal
content, such as a message being appended, is relayed verbatim and never taken for a command or
for a tagged completion. Every client line that carries a tag and a command name is a command;
lines without a space (``DONE`` ending IDLE, base64 SASL responses, ``*`` cancelling
AUTHENTICATE) are continuation responses and are relayed but neither matched nor recorded.

Typical use::

    async with FaultProxy("127.0.0.1", dovecot.imap_port) as proxy:
        proxy.cut(rb"UID EXPUNGE", when="before")
        ...  # point the gateway at proxy.url and make it move a message
        assert proxy.cuts == 1

:meth:`FaultProxy.hold` keeps a command back until the test releases it, to act (close a
client, send another request) while the gateway waits for its answer.

Credentials never leave the proxy: the arguments of LOGIN and the initial response of
AUTHENTICATE are replaced by ``***`` in :meth:`FaultProxy.commands`, and nothing is printed.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

LOOPBACK = "127.0.0.1"
# Longest line (without literals) either side may send; a longer one breaks the relay.
LINE_LIMIT = 16 * 1024 * 1024
CHUNK = 64 * 1024

_LITERAL = re.compile(rb"\{(\d+)[+-]?\}\Z")
_COMPLETION = re.compile(rb"(\S+) (OK|NO|BAD)(?:[ \r\n]|\Z)", re.IGNORECASE)
_LOGIN = re.compile(rb"(\S+ LOGIN)(?: .*)?\Z", re.IGNORECASE | re.DOTALL)
_AUTHENTICATE = re.compile(rb"(\S+ AUTHENTICATE \S+) .*\Z", re.IGNORECASE | re.DOTALL)

# What ends a relay without it being a fault: the peer went away.
_GONE = (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError)


@dataclass
class _Fault:
    pattern: re.Pattern[bytes]
    when: Literal["before", "after"]
    remaining: int


@dataclass
class Hold:
    """A command kept from the server until :meth:`release`; ``reached`` is set on its
    arrival."""

    pattern: re.Pattern[bytes]
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.released.set()


def _strip(line: bytes) -> bytes:
    return line.rstrip(b"\r\n")


def _literal_size(line: bytes) -> int | None:
    """The size of the literal announced at the end of ``line``, if any."""
    match = _LITERAL.search(_strip(line))
    return int(match.group(1)) if match else None


def _redact(command: bytes) -> bytes:
    """``command`` without the password of LOGIN or the SASL initial response."""
    if match := _LOGIN.match(command):
        return match.group(1) + b" ***"
    if match := _AUTHENTICATE.match(command):
        return match.group(1) + b" ***"
    return command


async def _closed(writer: asyncio.StreamWriter, *, abort: bool = False) -> None:
    """Close ``writer`` (at once with ``abort``); drop what a peer that no longer reads leaves
    unsent."""
    if abort:
        writer.transport.abort()
    writer.close()
    try:
        async with asyncio.timeout(2):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except _GONE:
        pass


class _Relay:
    """One client connection and its upstream connection."""

    def __init__(
        self,
        proxy: FaultProxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.client_reader, self.client_writer = client
        self.server_reader, self.server_writer = server
        # Tag of the command whose tagged completion breaks the connection ("after" fault).
        self.cut_tag: bytes | None = None
        self.closed = asyncio.Event()

    async def run(self) -> None:
        upstream = asyncio.create_task(self._upstream())
        downstream = asyncio.create_task(self._downstream())
        try:
            await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.close()
            for task in (upstream, downstream):
                task.cancel()
            results = await asyncio.gather(upstream, downstream, return_exceptions=True)
            for writer in (self.client_writer, self.server_writer):
                await _closed(writer, abort=self.proxy._stopping)
            for result in results:
                if isinstance(result, Exception) and not isinstance(result, _GONE):
                    self.proxy._errors.append(result)

    def close(self) -> None:
        """Close both sockets (data already written is still flushed)."""
        self.closed.set()
        for writer in (self.client_writer, self.server_writer):
            writer.close()

    def cut(self) -> None:
        if not self.closed.is_set():
            self.proxy._cuts += 1
            self.close()

    @staticmethod
    async def _line(reader: asyncio.StreamReader) -> bytes | None:
        """The next line with its line end, or None at the end of the stream."""
        try:
            return await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None

    @staticmethod
    async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int) -> None:
        """Relay exactly ``size`` octets (a literal), without looking at them."""
        while size > 0:
            chunk = await reader.read(min(size, CHUNK))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", size)
            writer.write(chunk)
            await writer.drain()
            size -= len(chunk)

    async def _upstream(self) -> None:
        """Client to server: one command (with its literals) at a time."""
        held = False
        while True:
            line = await self._line(self.client_reader)
            if line is None:
                return
            if b" " not in _strip(line):
                # A continuation response (DONE, SASL data); never a command.
                self.server_writer.write(line)
                await self.server_writer.drain()
                continue
            if held:
                # A command after one that breaks "after": the server must not see it.
                await self.closed.wait()
                return
            hold = self.proxy._held(_strip(line))
            if hold is not None:
                hold.reached.set()
                await hold.released.wait()
            line = self.proxy._rewritten(line)
            text = b""
            fault: _Fault | None = None
            while True:
                text += _strip(line)
                if fault is None:
                    fault = self.proxy._match(text)
                    if fault is not None and fault.when == "before":
                        self.proxy._record(text)
                        self.cut()
                        return
                    if fault is not None:
                        self.cut_tag = text.split(b" ", 1)[0]
                        held = True
                self.server_writer.write(line)
                await self.server_writer.drain()
                size = _literal_size(line)
                if size is None:
                    break
                await self._copy(self.client_reader, self.server_writer, size)
                next_line = await self._line(self.client_reader)
                if next_line is None:
                    self.proxy._record(text)
                    return
                line = next_line
            self.proxy._record(text)

    async def _downstream(self) -> None:
        """Server to client: one response (with its literals) at a time."""
        while True:
            line = await self._line(self.server_reader)
            if line is None:
                return
            if self.cut_tag is not None:
                match = _COMPLETION.match(line)
                if match and match.group(1) == self.cut_tag:
                    await self.client_writer.drain()
                    self.cut()
                    return
            while True:
                self.client_writer.write(line)
                await self.client_writer.drain()
                size = _literal_size(line)
                if size is None:
                    break
                await self._copy(self.server_reader, self.client_writer, size)
                next_line = await self._line(self.server_reader)
                if next_line is None:
                    return
                line = next_line


class FaultProxy:
    """asyncio TCP proxy on 127.0.0.1 (free port) to an upstream host:port.

    Arm faults with :meth:`cut`; each breaks the connection on which its command is sent.
    Other connections are relayed unharmed.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._faults: list[_Fault] = []
        self._holds: list[Hold] = []
        self._rewrites: list[tuple[re.Pattern[bytes], bytes]] = []
        self._commands: list[bytes] = []
        self._cuts = 0
        self._handlers: set[asyncio.Task[None]] = set()
        self._errors: list[BaseException] = []
        self._stopping = False

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("FaultProxy already started")
        self._stopping = False
        self._server = await asyncio.start_server(self._handle, LOOPBACK, 0, limit=LINE_LIMIT)
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Close the listener and every open relay; raise if a relay failed unexpectedly."""
        server, self._server = self._server, None
        self._stopping = True
        if server is not None:
            server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        if self._errors:
            errors, self._errors = self._errors, []
            raise RuntimeError("FaultProxy relay failed") from errors[0]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FaultProxy not started")
        return self._port

    @property
    def url(self) -> str:
        return f"imap://{LOOPBACK}:{self.port}"

    def cut(
        self,
        pattern: bytes | re.Pattern[bytes],
        *,
        when: Literal["before", "after"] = "after",
        times: int = 1,
    ) -> None:
        """Break the connection of the next ``times`` commands matching ``pattern``.

        ``pattern`` is searched (``re.search``) in the command line: tag, name and arguments,
        literal markers such as ``{12}`` included, literal octets and line ends excluded. Bytes
        patterns match case-insensitively; compiled patterns keep their own flags.

        ``when="before"``: the command is not forwarded (or, if it carries literals, not
        completed) and both sockets are closed: the server never performs it.
        ``when="after"``: the command is forwarded, the server's responses are relayed up to and
        excluding its tagged completion, then both sockets are closed: the server performed it,
        the client never learns the result. Commands the client pipelines after it are not
        forwarded.
        """
        if when not in ("before", "after"):
            raise ValueError(f"when must be 'before' or 'after', not {when!r}")
        if times < 1:
            raise ValueError("times must be at least 1")
        compiled = re.compile(pattern, re.IGNORECASE) if isinstance(pattern, bytes) else pattern
        self._faults.append(_Fault(compiled, when, times))

    def hold(self, pattern: bytes) -> Hold:
        """Keep the next command matching ``pattern`` (searched in its first line, case
        ignored) from the server until the returned hold is released. Its connection relays
        nothing else meanwhile; a client that closes it is noticed only after the release,
        when the command has gone to the server."""
        hold = Hold(re.compile(pattern, re.IGNORECASE))
        self._holds.append(hold)
        return hold

    def rewrite(self, pattern: bytes, replacement: bytes) -> None:
        """Send every command whose first line matches ``pattern`` (searched, case ignored)
        with the match replaced: the real server then answers what it would answer a client
        that wrote that, e.g. a NO to a NOTIFY SET it does not support."""
        self._rewrites.append((re.compile(pattern, re.IGNORECASE), replacement))

    @property
    def cuts(self) -> int:
        """How many connections the proxy has broken since it started (or since clear())."""
        return self._cuts

    def commands(self) -> list[bytes]:
        """Every command line seen from clients, in order, without line ends or literal octets.

        LOGIN arguments and AUTHENTICATE initial responses are replaced by ``***``.
        """
        return list(self._commands)

    def clear(self) -> None:
        """Disarm every fault and forget the commands seen and the cut count."""
        self._faults.clear()
        for hold in self._holds:
            hold.release()
        self._holds.clear()
        self._rewrites.clear()
        self._commands.clear()
        self._cuts = 0

    def _match(self, command: bytes) -> _Fault | None:
        """The armed fault matching ``command``, which it then uses up once."""
        for fault in self._faults:
            if fault.pattern.search(command):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _held(self, line: bytes) -> Hold | None:
        """The armed hold matching a command's first ``line``, which it uses up."""
        for hold in self._holds:
            if hold.pattern.search(line):
                self._holds.remove(hold)
                return hold
        return None

    def _rewritten(self, line: bytes) -> bytes:
        for pattern, replacement in self._rewrites:
            line = pattern.sub(replacement, line)
        return line

    def _record(self, command: bytes) -> None:
        self._commands.append(_redact(command))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            try:
                server = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port, limit=LINE_LIMIT
                )
            except OSError:
                await _closed(writer)  # upstream down: the client sees the connection closed
                return
            await _Relay(self, (reader, writer), server).run()
        except asyncio.CancelledError:
            await _closed(writer, abort=True)
            if not self._stopping:
                raise
            # Cancelled by stop(): end normally, since Python 3.11's start_server logs an error
            # for a handler task that ends cancelled.
        finally:
            self._handlers.discard(task)
