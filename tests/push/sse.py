"""A server-sent events reader for the tests, written from the WHATWG HTML standard (9.2.6
"Interpreting an event stream"), not from the gateway's framing code: lines end in LF, CR or
CRLF; a line starting with ":" is a comment; "field: value" loses one space after the colon;
a blank line dispatches the event (an event with no data is dropped); "id" sets the last event
id (kept across events), "event" the type (default "message")."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

_LINE = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Event:
    type: str
    data: str
    # The last event id after this event (the stream's, as a browser keeps it).
    last_id: str
    # Whether this event carried an id field of its own.
    has_id: bool

    def json(self) -> Any:
        return json.loads(self.data)


class SseParser:
    def __init__(self) -> None:
        self._pending = ""
        self._data: list[str] = []
        self._type = ""
        self._has_id = False
        self.last_id = ""
        self.comments = 0

    def feed(self, text: str) -> list[Event]:
        self._pending += text
        lines = _LINE.split(self._pending)
        # A lone trailing CR may be the first half of CRLF: keep it with the unfinished line.
        self._pending = lines.pop()
        events: list[Event] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._type = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self.last_id = value
            self._has_id = True
        return None

    def _dispatch(self) -> Event | None:
        data, event_type, has_id = self._data, self._type, self._has_id
        self._data, self._type, self._has_id = [], "", False
        if not data:
            return None
        return Event(event_type or "message", "\n".join(data), self.last_id, has_id)


class Stream:
    """An open event-stream response, read event by event with timeouts."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.parser = SseParser()
        self._chunks: AsyncIterator[str] = response.aiter_text()
        self._ready: list[Event] = []
        self.finished = False

    async def next(self, timeout: float = 10.0) -> Event:
        """The next event; fails the test when none comes within ``timeout`` or the
        response ends first."""
        async with asyncio.timeout(timeout):
            while not self._ready:
                assert await self._read(), "the stream ended"
        return self._ready.pop(0)

    async def rest(self, timeout: float = 10.0) -> list[Event]:
        """Every event until the response ends, which must happen within ``timeout``."""
        async with asyncio.timeout(timeout):
            while await self._read():
                pass
        rest, self._ready = self._ready, []
        return rest

    async def comments(self, count: int, timeout: float = 10.0) -> list[Event]:
        """Read until ``count`` comment lines arrived in all; the events read on the way."""
        async with asyncio.timeout(timeout):
            while self.parser.comments < count:
                assert await self._read(), "the stream ended"
        seen, self._ready = self._ready, []
        return seen

    async def _read(self) -> bool:
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            self.finished = True
            return False
        self._ready.extend(self.parser.feed(chunk))
        return True
