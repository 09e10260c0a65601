"""A real local push receiver: an HTTP/1.1 server on loopback, plain or TLS, that records what
reaches it (peer, SNI, request line, headers, body) and answers as a test scripts it."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

MAX_HEAD = 64 * 1024


@dataclass
class Received:
    peer: str
    sni: str | None
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    """What to send back. ``endless`` streams a chunked body that never ends; ``trickle``
    sends the head one octet at a time, ``trickle`` seconds apart; ``silent`` sends nothing."""

    status: int = 201
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    endless: bool = False
    trickle: float = 0.0
    silent: bool = False


Script = Callable[[Received], Answer]


@dataclass
class Receiver:
    host: str
    port: int
    received: list[Received]

    def url(self, path: str = "/push/abc", *, name: str | None = None, scheme: str = "") -> str:
        return f"{scheme}://{name or self.host}:{self.port}{path}"


@asynccontextmanager
async def receiver(
    script: Script = lambda _: Answer(),
    *,
    tls: ssl.SSLContext | None = None,
    host: str = "127.0.0.1",
) -> AsyncIterator[Receiver]:
    received: list[Received] = []
    names: dict[int, str | None] = {}
    if tls is not None:

        def remember(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            names[id(sock)] = name

        tls.sni_callback = remember  # type: ignore[assignment]

    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        peer = writer.get_extra_info("peername")[0]
        ssl_object = writer.get_extra_info("ssl_object")
        sni = names.get(id(ssl_object)) if ssl_object is not None else None
        try:
            while True:
                request = await _read_request(reader, peer, sni)
                if request is None:
                    return
                received.append(request)
                if not await _answer(writer, script(request)):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        finally:
            writer.close()
            handlers.discard(task)

    server = await asyncio.start_server(serve, host, 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Receiver(host, port, received)
    finally:
        server.close()
        # Python 3.11's server.close() leaves open connections alone: end their handlers.
        for handler in list(handlers):
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


async def _read_request(
    reader: asyncio.StreamReader, peer: str, sni: str | None
) -> Received | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head[:-4].decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Received(peer, sni, method, target, headers, body)


async def _answer(writer: asyncio.StreamWriter, answer: Answer) -> bool:
    """Send ``answer``; False when the connection is to end."""
    if answer.silent:
        await asyncio.sleep(3600)
        return False
    headers = dict(answer.headers)
    if answer.endless:
        headers["transfer-encoding"] = "chunked"
    else:
        headers["content-length"] = str(len(answer.body))
    head = f"HTTP/1.1 {answer.status} X\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    data = (head + "\r\n").encode("latin-1")
    if answer.trickle:
        for octet in data:
            writer.write(bytes([octet]))
            await writer.drain()
            await asyncio.sleep(answer.trickle)
        return False
    writer.write(data)
    if answer.endless:
        chunk = b"%x\r\n%s\r\n" % (16384, b"x" * 16384)
        while True:
            writer.write(chunk)
            await writer.drain()
    writer.write(answer.body)
    await writer.drain()
    return True
