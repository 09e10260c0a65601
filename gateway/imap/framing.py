"""Split the upstream byte stream into complete IMAP responses.

RFC 3501 2.2: a response is lines ended by CRLF, except that a line ending in a literal
announcement ``{N}`` is followed by exactly N octets of data and then more of the same
response. RFC 3516 adds ``~{N}`` (literal8) for BINARY fetches. The framer knows nothing
else about the grammar: it only finds where each response ends, so the parser always gets
whole responses and never has to wait for more bytes.
"""

from __future__ import annotations

import re

from gateway.imap.errors import ProtocolError

# A literal announcement at the very end of a line: "{123}" or, for literal8, "~{123}".
# Servers never send "{N+}" (RFC 7888 non-synchronizing literals are client-to-server only).
_LITERAL_TAIL = re.compile(rb"~?\{([0-9]{1,20})\}\Z")
# Longest possible announcement, so only the tail of a long line is matched.
_TAIL_WINDOW = 24


class ResponseFramer:
    """Incremental splitter: feed any chunks, get back each complete response.

    Each response is returned as its exact bytes without the final CRLF, literals embedded
    verbatim (announcement, CRLF and data included). The buffer is scanned once: the
    position of the last search is remembered, and literal data is skipped by count rather
    than searched, so multi-megabyte literals cost linear time.
    """

    def __init__(self, max_line: int, max_literal: int) -> None:
        """``max_line`` bounds one line (literal data excluded), ``max_literal`` one literal.

        Both protect the gateway's memory from a broken or hostile upstream.
        """
        if max_line < 1 or max_literal < 0:
            raise ValueError("max_line must be positive and max_literal non-negative")
        self._max_line = max_line
        self._max_literal = max_literal
        self._buffer = bytearray()
        self._line_start = 0  # where the current line (after any literal) begins
        self._scan = 0  # where to resume looking for LF, or the literal's end
        self._literal_left = 0  # literal octets still to come

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the responses they complete, in order."""
        self._buffer += data
        responses: list[bytes] = []
        response_start = 0
        while True:
            if self._literal_left and not self._skip_literal():
                break
            end = self._next_line_end()
            if end is None:
                break
            if not self._line_announces_literal(end):
                responses.append(self._copy(response_start, end))
                response_start = end + 2
                self._line_start = response_start
        self._discard(response_start)
        return responses

    @property
    def buffered(self) -> int:
        """Octets received but not yet part of a complete response.

        After STARTTLS this must be 0: anything already buffered arrived in plaintext.
        """
        return len(self._buffer)

    def _copy(self, start: int, end: int) -> bytes:
        """One copy of a buffer slice (slicing the bytearray first would copy twice)."""
        with memoryview(self._buffer) as view, view[start:end] as part:
            return part.tobytes()

    def _skip_literal(self) -> bool:
        """Consume literal data present in the buffer; True once the literal is complete."""
        taken = min(self._literal_left, len(self._buffer) - self._scan)
        self._scan += taken
        self._literal_left -= taken
        if self._literal_left:
            return False
        self._line_start = self._scan
        return True

    def _next_line_end(self) -> int | None:
        """Index of the CR of the current line's CRLF, or None if the line is incomplete."""
        newline = self._buffer.find(b"\n", self._scan)
        if newline == -1:
            self._scan = len(self._buffer)
            # The last octet may be the CR of a CRLF still in flight.
            if self._scan - self._line_start > self._max_line + 1:
                raise ProtocolError(f"response line longer than {self._max_line} octets")
            return None
        end = newline - 1
        if end < self._line_start or self._buffer[end] != 0x0D:
            # RFC 3501 2.2: lines end in CRLF; a bare LF is never valid outside a literal.
            raise ProtocolError("bare LF in response line")
        if end - self._line_start > self._max_line:
            raise ProtocolError(f"response line longer than {self._max_line} octets")
        self._scan = newline + 1
        return end

    def _line_announces_literal(self, end: int) -> bool:
        """If the line ends in ``{N}``/``~{N}``, start skipping N octets and return True."""
        if end == self._line_start or self._buffer[end - 1] != 0x7D:  # "}"
            return False
        window_start = max(self._line_start, end - _TAIL_WINDOW)
        match = _LITERAL_TAIL.search(bytes(self._buffer[window_start:end]))
        if match is None:
            return False
        size = int(match.group(1))
        if size > self._max_literal:
            raise ProtocolError(f"literal of {size} octets exceeds {self._max_literal}")
        self._literal_left = size
        if size == 0:
            self._line_start = self._scan
        return True

    def _discard(self, consumed: int) -> None:
        """Drop returned responses from the buffer, once per feed (amortised linear)."""
        if consumed:
            del self._buffer[:consumed]
            self._scan -= consumed
            self._line_start -= consumed
