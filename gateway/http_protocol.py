"""HTTP/1.1 connections with bounds on what a client may hold open: uvicorn's httptools
protocol with a deadline for the request head, one for the body, a bound on the head's size,
and a bounded drain of a body the gateway answered without reading.

uvicorn (0.55) has no timeout for a request's head nor its body: its keep-alive timer runs only
between requests and stops at the first octet of the next one, and its httptools parser keeps
every octet of an unfinished head (h11's 16 KiB bound exists only with ``http="h11"``, which
has no timeouts either). A client sending a few octets now and then held a connection and
whatever it reserved (a concurrency slot, memory) for ever. No uvicorn option bounds this, so
the gateway subclasses the protocol; the subclass reads and sets only what uvicorn's own
protocol code uses (the parser callbacks, the request cycle, flow control).

* **Head**: from a connection's start, or a request's first octet, to the end of its headers,
  at most ``head_timeout`` seconds and :data:`MAX_HEAD_OCTETS` octets. Past either: 408 or 431
  (RFC 9110 15.5.9, RFC 6585 5), and the connection is closed. A connection that sent nothing
  is closed silently.
* **Body**: ``body_timeout`` seconds, plus one second per :data:`BODY_MIN_RATE` octets received,
  so a large body at a reasonable rate is never cut and a trickle is (Apache's mod_reqtimeout
  works the same way). The clock restarts while the gateway itself is not reading. Past it, a
  request not yet answered gets 408; the application sees its client go away.
* **Drain**: an answer sent before the whole body arrived (a body over ``maxSizeRequest``,
  refused unread) is followed by reading and discarding the rest, up to ``drain_octets`` and
  :data:`DRAIN_SECONDS`, before the connection is closed: closing a socket with unread input
  makes the kernel reset the connection, and a client that writes its whole body before it
  reads (Python's urllib) then never sees the answer. Past either bound the connection is
  closed anyway.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from gateway.jmap.errors import problem

# Request line and header fields together; generous for long tokens and cookies (h11 and
# Node.js take 16 KiB, nginx 32 KiB by default).
MAX_HEAD_OCTETS = 64 * 1024
# Octets per second a body must keep up, on average, past the body timeout.
BODY_MIN_RATE = 1024
# Longest drain of a body answered before it was read (nginx's lingering_time is 30 s).
DRAIN_SECONDS = 30.0
# Set in the request's ASGI state when the body timed out, for the access log.
BODY_TIMED_OUT = "body-timed-out"

# What a cut counts as, for the metrics (a closed set).
HEAD_TIMEOUT = "head_timeout"
HEAD_TOO_LARGE = "head_too_large"
BODY_TIMEOUT = "body_timeout"
DRAIN_LIMIT = "drain_limit"


@dataclass(frozen=True)
class EdgeLimits:
    head_timeout: float
    body_timeout: float
    drain_octets: int
    # Told of every connection the gateway cuts, with one of the reasons above.
    on_cut: Callable[[str], None]


def protocol_class(limits: EdgeLimits) -> type[HttpToolsProtocol]:
    """The protocol class uvicorn builds each connection with (``http=`` of its Config)."""

    class Protocol(BoundedHttp):
        edge = limits

    return Protocol


class BoundedHttp(HttpToolsProtocol):
    """See the module docstring. ``edge`` is set by :func:`protocol_class`."""

    edge: EdgeLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = False
        self._head_octets = 0
        self._body_timer: asyncio.TimerHandle | None = None
        # The request whose body is still arriving (with pipelining, not always self.cycle's
        # predecessor's: uvicorn's self.cycle is the last request parsed).
        self._body_cycle: RequestResponseCycle | None = None
        self._body_started = 0.0
        self._body_octets = 0
        self._draining = False
        self._drain_left = 0
        self._drain_timer: asyncio.TimerHandle | None = None
        self._close_after_body = False

    # -- connection --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._body_timer, self._drain_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # Counted after parsing: the chunk that completes a head is never counted, any
            # other chunk at most once, so the head kept in memory stays below the bound
            # plus one read.
            self._head_octets += len(data)
            if self._head_octets > MAX_HEAD_OCTETS:
                self._refuse_head(HEAD_TOO_LARGE, 431, "The request head is too large.")

    # -- parser callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_octets = 0
        if self._head_timer is None:
            self._arm_head()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_head()
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not previous:
            cycle.transport = _CycleTransport(self, cycle)
            self._body_cycle = cycle
            self._body_octets = 0
            self._body_started = self.loop.time()
            self._body_timer = self.loop.call_later(self.edge.body_timeout, self._body_check)

    def on_body(self, body: bytes) -> None:
        self._body_octets += len(body)
        if self._draining:
            self._drain_left -= len(body)
            if self._drain_left < 0:
                self._cut(DRAIN_LIMIT)
                return
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        drained = self._draining
        self._body_cycle = None
        self._draining = False
        for timer in (self._body_timer, self._drain_timer):
            if timer is not None:
                timer.cancel()
        self._body_timer = self._drain_timer = None
        if self._close_after_body:
            self.transport.close()
        elif drained and not self.transport.is_closing():
            # uvicorn's keep-alive timer stopped at the drained octets: the next request's
            # head deadline bounds the idle time instead.
            self._arm_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        body_cycle = self._body_cycle
        if body_cycle and body_cycle.response_complete and not self.transport.is_closing():
            self._draining = True
            self._drain_left = self.edge.drain_octets
            self._drain_timer = self.loop.call_later(DRAIN_SECONDS, self._cut, DRAIN_LIMIT)

    def close_for(self, cycle: RequestResponseCycle) -> None:
        """``cycle`` is done with the connection: close it once the request body is in."""
        if (
            cycle.response_complete
            and cycle is self._body_cycle
            and not self.transport.is_closing()
        ):
            self._close_after_body = True
        else:
            self.transport.close()

    # -- deadlines ---------------------------------------------------------------------------

    def _arm_head(self) -> None:
        self._head_timer = self.loop.call_later(self.edge.head_timeout, self._head_expired)

    def _disarm_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._answering():
            # A pipelined request's head: its clock starts once the one before is answered.
            self._arm_head()
            return
        if self._in_head:
            self._refuse_head(HEAD_TIMEOUT, 408, "The request head did not arrive in time.")
        else:
            self._cut(HEAD_TIMEOUT)  # nothing sent: no request to answer

    def _body_check(self) -> None:
        self._body_timer = None
        cycle = self._body_cycle
        if cycle is None or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused or cycle.waiting_for_100_continue:
            # The gateway is not reading (the application is busy), or has not yet told the
            # client to send (Expect: 100-continue): not the client's delay.
            self._body_started, self._body_octets = now, 0
        deadline = self._body_started + self.edge.body_timeout + self._body_octets / BODY_MIN_RATE
        if now < deadline:
            self._body_timer = self.loop.call_later(deadline - now, self._body_check)
            return
        if cycle.response_started or self.pipeline:
            # Its answer is under way, or an earlier request's is: nothing can be said now.
            self._cut(BODY_TIMEOUT)
            return
        self.transport.write(_problem_response(408, "The request body did not arrive in time."))
        self._cut(BODY_TIMEOUT)
        # The application hears that its client went away, and its answer goes nowhere.
        cycle.scope["state"][BODY_TIMED_OUT] = True
        cycle.disconnected = True
        cycle.message_event.set()

    # -- cutting -----------------------------------------------------------------------------

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _refuse_head(self, reason: str, status: int, detail: str) -> None:
        """Answer ``status`` and close, unless a request before this one is being answered
        (pipelined): the connection is then just closed."""
        if not self._answering() and not self.transport.is_closing():
            self.transport.write(_problem_response(status, detail))
        self._cut(reason)

    def _cut(self, reason: str) -> None:
        """Close the connection now, counting why (once)."""
        if self.transport.is_closing():
            return
        self.edge.on_cut(reason)
        self._in_head = False
        self.transport.close()


class _CycleTransport(asyncio.Transport):
    """The connection as a request cycle sees it: closing waits for the request body."""

    def __init__(self, protocol: BoundedHttp, cycle: RequestResponseCycle) -> None:
        super().__init__()
        self._protocol = protocol
        self._cycle = cycle

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._protocol.transport.write(data)

    def is_closing(self) -> bool:
        return self._protocol.transport.is_closing()

    def close(self) -> None:
        self._protocol.close_for(self._cycle)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._protocol.transport.get_extra_info(name, default)


def _problem_response(status: int, detail: str) -> bytes:
    """A complete HTTP/1.1 response carrying an RFC 7807 problem document, closing."""
    phrase = http.HTTPStatus(status).phrase
    body = orjson.dumps(problem(status, phrase, detail))
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "content-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
