"""A push service of the tests' own: a tiny HTTP/1.1 server on a free loopback port that records
every request it gets (method, path, headers, body) and answers each as the test tells it.

Real sockets, so the gateway's whole outbound path runs (its destination checks with loopback
allowed, httpx, TLS-less HTTP since the tests allow ``http``). A test sets :attr:`answer` to
a function of the request returning a :class:`Reply`, or :data:`HANG` to keep the request
unanswered (a push service that stalls; the connection closes when the receiver does or
when the sender gives up), and waits for requests with :meth:`wait_for`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

LOOPBACK = "127.0.0.1"
# The largest request body accepted (push services refuse past 4096 octets; some slack to see
# an oversized body arrive rather than a cut connection).
MAX_BODY = 65536
MAX_HEAD = 16384
WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int = 201
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


# Returned by an answer function: do not answer this request.
HANG = None
Answer = Callable[[Request], Reply | None]


def created(_: Request) -> Reply | None:
    """What a push service answers a message it accepted (RFC 8030 5: 201 Created)."""
    return Reply(201, {"Location": "/m/1"})


class WebPushReceiver:
    def __init__(self) -> None:
        self.port = 0
        self.requests: list[Request] = []
        self.answer: Answer = created
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._closing = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        # Not cancelled (asyncio's stream callback would log the cancellation): held requests
        # are let go and every connection is cut, so each handler ends by itself.
        self._closing.set()
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def url(self, path: str = "/push/1") -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def to(self, path: str) -> list[Request]:
        """The requests made to ``path``, in the order they arrived."""
        return [r for r in self.requests if r.path == path]

    async def wait_for(
        self, count: int, path: str | None = None, timeout: float = WAIT_SECONDS
    ) -> list[Request]:
        """Wait until at least ``count`` requests (to ``path``, if given) arrived; all of them."""

        def enough() -> bool:
            return len(self.requests if path is None else self.to(path)) >= count

        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(enough), timeout)
        return list(self.requests if path is None else self.to(path))

    # -- the server ---------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while (request := await _read_request(reader)) is not None:
                async with self._arrived:
                    self.requests.append(request)
                    self._arrived.notify_all()
                reply = self.answer(request)
                if reply is None:
                    await self._closing.wait()  # held until the receiver closes
                    return
                writer.write(_response(reply))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    """One request of a keep-alive connection; None at a clean end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    if len(head) > MAX_HEAD:
        raise ValueError("head too large")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise ValueError("chunked bodies are not expected from the gateway")
    length = int(headers.get("content-length", "0"))
    if length > MAX_BODY:
        raise ValueError("body too large")
    body = await reader.readexactly(length)
    return Request(method, path, headers, body)


def _response(reply: Reply) -> bytes:
    reasons = {201: "Created", 200: "OK", 404: "Not Found", 410: "Gone", 429: "Too Many Requests"}
    lines = [f"HTTP/1.1 {reply.status} {reasons.get(reply.status, 'Status')}"]
    headers = {"Content-Length": str(len(reply.body)), **reply.headers}
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + reply.body
