"""What a method handler gets besides its arguments: the process's services and the caller.

A separate module so translators can name it without importing the service wiring, which
imports the translators to register their methods.
"""

from __future__ import annotations

import weakref
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from gateway.auth import Principal
from gateway.cache.account import AccountIndex
from gateway.cache.format_fence import NewerIndexFormat
from gateway.imap.connection import ImapConnection
from gateway.imap.lazy import LazyConnection
from gateway.jmap.errors import MethodError
from gateway.sync.catch_up import IndexingInProgress

if TYPE_CHECKING:
    from gateway.services import Services


# Seconds a client refused during its account's first indexing is told to wait (Retry-After).
INDEXING_RETRY_SECONDS = 5


@dataclass
class RetryHint:
    """What the HTTP response of one request says in Retry-After (RFC 9110 10.2.3): set when
    a method of it got serverUnavailable because the account's first indexing goes on. The
    transport puts one in :data:`RETRY_HINT` around the request; its work runs in tasks of
    their own, which share the object through their copy of the context."""

    seconds: int | None = None


RETRY_HINT: ContextVar[RetryHint | None] = ContextVar("retry_hint", default=None)


@dataclass
class RequestCatchUp:
    """What one request did of the account's catch-up, so its methods do it once."""

    # Caught up, or the index trusted within GATEWAY_SYNC_INTERVAL_SECONDS.
    done: bool = False
    # The upstream itself was asked (not trusting the interval): a writer needs no second
    # fresh catch-up before planning (translators.email.set).
    asked_upstream: bool = False
    # Why a call of this request could not wait for the account's first indexing: its later
    # calls are answered the same at once rather than waiting as long again.
    unavailable: str | None = None


@dataclass(frozen=True)
class RequestEnv:
    services: Services
    principal: Principal
    # Per request: work done once however many calls need it (e.g. a blob budget).
    memo: dict[str, Any] = field(default_factory=dict)
    caught_up: RequestCatchUp = field(default_factory=RequestCatchUp)
    _upstreams: weakref.WeakSet[LazyConnection] = field(default_factory=weakref.WeakSet, repr=False)

    @cached_property
    def index(self) -> AccountIndex:
        """The caller's account's index (read it after :meth:`catch_up`)."""
        return AccountIndex.of(
            self.services.store.client,
            self.principal.account_id,
            self.services.settings.submission_retention_seconds,
        )

    def upstream(self) -> LazyConnection:
        """The caller's upstream connection for one method's work, borrowed from the pool on
        first use (``async with env.upstream() as upstream``, then ``upstream.connection()``)."""
        handle = LazyConnection(self.services.pool, self.principal.login)
        self._upstreams.add(handle)
        return handle

    async def catch_up(self, *, fresh: bool = False) -> None:
        """The account's index up to date, once per request unless ``fresh`` (which asks the
        upstream in a run started after this call: see gateway.sync.catch_up).

        A request waits GATEWAY_SYNC_WAIT_SECONDS at most: past them, during the account's
        first indexing, the method fails with serverUnavailable (the indexing goes on);
        otherwise it reads the index as it stands (see gateway.sync.catch_up).

        The catch-up borrows a connection of its own, so none of this request's may be held
        meanwhile: with every connection of the user held by requests waiting for catch-ups,
        none would be left for them."""
        if self.caught_up.done and not fresh:
            return
        if self.caught_up.unavailable is not None:
            raise MethodError("serverUnavailable", self.caught_up.unavailable)
        if any(handle.held for handle in self._upstreams):
            raise RuntimeError("a catch-up must not wait while its request holds a connection")
        try:
            asked = await self.services.catch_up.run(
                self.index,
                self._connect,
                fresh=fresh,
                patience=self.services.settings.sync_wait_seconds,
            )
        except (IndexingInProgress, NewerIndexFormat) as exc:
            # RFC 8620 3.6.2: serverUnavailable, "try again later"; the HTTP response then
            # carries Retry-After. The indexing goes on; or, in a rolling upgrade, a replica
            # of the newer release answers the retry.
            hint = RETRY_HINT.get()
            if hint is not None:
                hint.seconds = INDEXING_RETRY_SECONDS
            self.caught_up.unavailable = f"{exc} Try again later."
            raise MethodError("serverUnavailable", self.caught_up.unavailable) from None
        self.caught_up.asked_upstream |= asked
        self.caught_up.done = True

    def _connect(self) -> AbstractAsyncContextManager[ImapConnection]:
        return self.services.pool.connection(self.principal.login)
