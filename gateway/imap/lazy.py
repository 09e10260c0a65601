"""A user's upstream connection for one piece of work, taken from the pool only if needed.

Most JMAP reads are answered from the index and the cache: a method that borrowed a pooled
connection up front held one of the user's few (``max_per_user``) for its whole run without
sending anything, and other requests of the user waited for it.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Self

from gateway.imap.connection import ImapConnection
from gateway.imap.pool import ImapPool, Login


class LazyConnection:
    """Borrows a connection of ``login``'s user on the first :meth:`connection` and gives it
    back when the ``async with`` block ends (or at :meth:`release`)."""

    def __init__(self, pool: ImapPool, login: Login) -> None:
        self._pool = pool
        self._login = login
        self._borrowed = contextlib.AsyncExitStack()
        self._conn: ImapConnection | None = None

    @property
    def held(self) -> bool:
        """Whether a connection is checked out of the pool now."""
        return self._conn is not None

    async def connection(self) -> ImapConnection:
        """The connection, borrowed from the pool on first use."""
        if self._conn is None:
            self._conn = await self._borrowed.enter_async_context(
                self._pool.connection(self._login)
            )
        return self._conn

    async def release(self) -> None:
        """Give the connection back now; work that follows borrows one again if it needs it
        (likely the same: the pool hands out its most recently used first)."""
        await self._end(None, None, None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._end(exc_type, exc, tb)

    async def _end(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        borrowed, self._borrowed = self._borrowed, contextlib.AsyncExitStack()
        self._conn = None
        await borrowed.__aexit__(exc_type, exc, tb)
