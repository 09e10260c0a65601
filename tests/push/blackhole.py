"""A TCP relay that can go silent: the connections it holds stop carrying bytes either way,
yet stay open, as after a NAT forgot a flow or a peer vanished without a word. Connections
made after that are relayed normally."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

LOOPBACK = "127.0.0.1"


class Blackhole:
    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._muted: list[asyncio.Event] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._relay, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def mute(self) -> int:
        """Silence every connection open now; how many."""
        for muted in self._muted:
            muted.set()
        count, self._muted = len(self._muted), []
        return count

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(LOOPBACK, self.target)
        muted = asyncio.Event()
        self._muted.append(muted)
        pumps = [
            asyncio.create_task(self._pump(reader, upstream_writer, muted)),
            asyncio.create_task(self._pump(upstream_reader, writer, muted)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._tasks.difference_update(pumps)
            writer.close()
            upstream_writer.close()

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, muted: asyncio.Event
    ) -> None:
        while data := await reader.read(65536):
            if muted.is_set():
                await asyncio.Event().wait()  # hold the connection open, say nothing
            writer.write(data)
            await writer.drain()
