"""Waiting for unsolicited responses in IDLE (RFC 2177), one signal at a time.

:meth:`gateway.imap.connection.ImapConnection.idle` sends IDLE, waits for the continuation and
hands out an :class:`IdleSession`; leaving it sends DONE. The session reads only when asked
(:meth:`IdleSession.next`), so what the upstream sends waits in the socket, never in a queue
of ours: a flood costs at most one read's worth of lines (the connection's read size), and a
burst already read is coalesced into one :class:`Overflow` past :data:`COALESCE_AT` lines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.imap.errors import ConnectionLost, ProtocolError
from gateway.imap.responses.unsolicited import Overflow, Signal, classify

log = logging.getLogger(__name__)

# Lines already read and waiting beyond this are one burst: dropped and reported as Overflow
# (the watcher resynchronizes on any signal, so nothing is lost but parsing work).
COALESCE_AT = 64


class IdleSession:
    """The unsolicited responses of one IDLE, classified; see the module docstring.

    ``read`` returns the next complete response (raising ConnectionLost at EOF), ``waiting``
    says how many are already read and framed, ``lost`` marks the connection broken.
    """

    __slots__ = (
        "_backlog",
        "_broken",
        "_ended",
        "_lost",
        "_overflowed",
        "_read",
        "_utf8",
        "_waiting",
    )

    def __init__(
        self,
        read: Callable[[], Awaitable[bytes]],
        waiting: Callable[[], int],
        lost: Callable[[], None],
        *,
        backlog: list[bytes] | None = None,
        overflowed: bool = False,
        utf8: bool = False,
    ) -> None:
        self._read = read
        self._waiting = waiting
        self._lost = lost
        self._backlog = backlog or []
        self._overflowed = overflowed
        self._utf8 = utf8
        self._broken = False
        self._ended = False

    async def next(self, timeout: float | None) -> Signal | None:
        """The next signal, or None when ``timeout`` seconds pass without one.

        Raises ConnectionLost on BYE or when the upstream closes; the connection is then
        broken. A timeout, or cancelling this call, leaves the stream intact (nothing is
        half read), so the IDLE can still be left with DONE.
        """
        if self._broken:
            raise ConnectionLost("the connection was lost during IDLE")
        if self._ended:
            # Reading now would take the answers of whatever command follows the IDLE.
            raise RuntimeError("the IDLE has ended")
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                while True:
                    signal = await self._next_signal()
                    if signal is not None:
                        return signal
        except TimeoutError as exc:
            if deadline.expired():
                return None
            # ETIMEDOUT from the socket (a TimeoutError too): the peer is gone.
            self._lose()
            raise ConnectionLost("IDLE: connection timed out") from exc
        except ConnectionLost:
            self._lose()
            raise
        except OSError as exc:
            self._lose()
            raise ConnectionLost(f"IDLE: connection lost ({exc.strerror or exc})") from exc

    async def _next_signal(self) -> Signal | None:
        if self._overflowed:
            self._overflowed = False
            self._check_burst(self._backlog)
            self._backlog.clear()
            return Overflow()
        if self._backlog:
            return self._classify(self._backlog.pop(0))
        raw = await self._read()
        waiting = self._waiting()
        if waiting < COALESCE_AT:
            return self._classify(raw)
        # Already read, so no await below suspends: the burst goes in one step.
        burst = [raw, *[await self._read() for _ in range(waiting)]]
        self._check_burst(burst)
        # A read that finds data buffered does not suspend either: let others run between
        # bursts, so a flood cannot hold the event loop.
        await asyncio.sleep(0)
        return Overflow()

    def _classify(self, raw: bytes) -> Signal | None:
        if not raw.startswith(b"* "):
            # RFC 2177 3: during IDLE only untagged responses may come; anything else means
            # the stream is not where we think.
            self._lose()
            raise ProtocolError("tagged or continuation response during IDLE")
        try:
            return classify(raw, utf8=self._utf8)
        except ProtocolError as exc:
            # The line was framed correctly, so the stream is intact; what changed is unknown.
            log.warning("unreadable response during IDLE (%s); treating as overflow", exc)
            return Overflow()

    def _check_burst(self, lines: list[bytes]) -> None:
        """What a dropped burst cannot hide: a BYE, or a line that is not untagged."""
        for line in lines:
            if not line.startswith(b"* "):
                self._lose()
                raise ProtocolError("tagged or continuation response during IDLE")
            if line[:5].upper() == b"* BYE":
                self._lose()
                raise ConnectionLost("upstream said BYE")

    def end(self) -> None:
        """The IDLE is over (DONE is on its way): no more reading through this session."""
        self._ended = True

    def _lose(self) -> None:
        self._broken = True
        self._lost()
