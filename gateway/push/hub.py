"""The change hub: every committed state change, fanned out to every listener of its account.

A commit anywhere in the process reaches the hub through the journal's listener
(cache/journal.py), synchronously, in the writer's own call stack: the hub only merges it into
a bounded outbox (per account, the newest state per type) and wakes one task, which publishes
it on the account's channel (cache/pushbus.py). Every replica with listeners of the account,
this one included, hears the announcement and merges it into each listener's pending map
(push/coalesce.py), which the EventSource and WebSocket writers drain with
:meth:`Subscription.next`. A change made on another replica, or found upstream by a watcher's
catch-up (which commits through the same journal), takes the same path: one way in, one way
out.

Pub/sub loses what is published while a connection is down; after every reconnect the hub
re-reads the current states of its accounts and offers them to their listeners, so each hears
of whatever it missed (a state equal to what it has is not sent again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from gateway.auth import Principal
from gateway.cache.journal import StateChange, listening
from gateway.cache.pushbus import Announcement, PushBus
from gateway.jmap.errors import problem
from gateway.problems import RETRY_AFTER_SECONDS, HttpProblem, too_many_concurrent
from gateway.push import Changed, CloseReason, TypeStates
from gateway.push.coalesce import Pending
from gateway.push.states import current_states, newer

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger(__name__)

# Accounts whose changes wait in the outbox for the publisher. Past it (Redis slower than the
# writers for long) the oldest account's waiting states are dropped and counted as a publish
# failure; its listeners hear of them with the account's next change or the next resync.
MAX_OUTBOX = 10_000
# Accounts whose states a resync reads at once.
RESYNC_BATCH = 32
# Backoff of a resync whose reads failed.
BACKOFF_FIRST_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 10.0
# On stop, how long the changes committed last still get to be announced.
FLUSH_SECONDS = 2.0


class Closed(Exception):
    """The subscription was closed by the gateway; ``reason`` says why."""

    def __init__(self, reason: CloseReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class WatchDemand(Protocol):
    """Who watches the upstream for accounts with listeners (push/watch.py implements it).

    The hub tells it of every listener that comes and goes, with the credentials it
    authenticated with (None: a push-token listener, which carries none), and of every
    "released" announcement heard for an account with local listeners (another replica's
    watcher let go: a candidate may take over). All three are synchronous and must not raise.
    """

    def attach(self, account_id: str, principal: Principal | None) -> None: ...

    def detach(self, account_id: str, principal: Principal | None) -> None: ...

    def released(self, account_id: str) -> None: ...


class Subscription:
    """One listener of one account: its types, what it has not been told, one waiter.

    Small on purpose (a few slots and the pending map): a replica holds thousands. A reader
    either awaits :meth:`next` (one task at a time) or, holding no task while idle, gives
    :meth:`on_ready` a callback and drains with :meth:`take` when it is called.
    """

    __slots__ = ("_closed", "_on_ready", "_pending", "_waiter", "account_id", "principal", "types")

    def __init__(
        self, account_id: str, principal: Principal | None, types: frozenset[str] | None
    ) -> None:
        self.account_id = account_id
        self.principal = principal
        self.types = types  # None: every type push knows
        self._pending = Pending()
        self._waiter: asyncio.Future[None] | None = None
        self._on_ready: Callable[[], None] | None = None
        self._closed: CloseReason | None = None

    def set_types(self, types: frozenset[str] | None) -> None:
        """Listen to these types from now on (RFC 8887 WebSocketPushEnable.dataTypes)."""
        self.types = types
        self._pending.restrict(types)

    def prime(self, sent: TypeStates) -> None:
        """The client knows these states (Last-Event-ID, pushState, or what was just sent
        to it): an announcement of an equal or older state is not delivered."""
        self._pending.prime(sent)

    def known(self) -> TypeStates:
        """The states the client was told or primed with."""
        return self._pending.known()

    def offer(self, changed: TypeStates) -> None:
        """Merge announced states (the hub calls this); wakes the waiter if any is new."""
        if self._closed is None and self._pending.merge(changed, self.types):
            self._wake()

    def on_ready(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` (synchronously, from the hub's call stack: it must not raise and
        should only schedule work) whenever something new waits or the subscription closes."""
        self._on_ready = callback

    def take(self) -> TypeStates | None:
        """What waits, now counted as delivered (None: nothing); raises :class:`Closed` once
        closed."""
        if self._closed is not None:
            raise Closed(self._closed)
        return self._pending.take()

    async def next(self, timeout: float | None) -> Changed | None:
        """The changes since the last call, coalesced: ``{accountId: {type: state}}``, only
        types in ``types`` whose state is newer than what the client has. None when
        ``timeout`` seconds passed without any; raises :class:`Closed` once closed."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self._closed is not None:
                        raise Closed(self._closed)
                    waiting = self._pending.take()
                    if waiting:
                        return {self.account_id: waiting}
                    self._waiter = loop.create_future()
                    await self._waiter
        except TimeoutError:
            return None
        finally:
            self._waiter = None

    @property
    def closed(self) -> CloseReason | None:
        return self._closed

    def close(self, reason: CloseReason) -> None:
        """End the subscription: :meth:`next` raises Closed(reason) from now on."""
        if self._closed is None:
            self._closed = reason
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._on_ready is not None:
            self._on_ready()


class PushHub:
    """Listeners of this replica by account, the outbox of local commits, and the tasks
    publishing the one and feeding the other (see the module's docstring)."""

    def __init__(
        self,
        svc: Services,
        bus: PushBus,
        demand: WatchDemand,
        *,
        max_listeners: int,
        max_per_account: int,
    ) -> None:
        self._svc = svc
        self._bus = bus
        self._demand = demand
        self.max_listeners = max_listeners
        self.max_per_account = max_per_account
        self._listeners: dict[str, list[Subscription]] = {}
        self._count = 0
        self._outbox: dict[str, TypeStates] = {}
        self._outbox_ready = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False
        self._resync: asyncio.Task[None] | None = None
        self._resync_again = False
        self._journal = contextlib.ExitStack()
        self._draining = False

    @property
    def demand(self) -> WatchDemand:
        return self._demand

    @demand.setter
    def demand(self, demand: WatchDemand) -> None:
        """Who watches the upstream; set once at start-up, before any listener."""
        self._demand = demand

    async def start(self) -> None:
        """Hear the process's commits and the bus's announcements."""
        self._journal.enter_context(listening(self._committed))
        self._bus.on_resubscribed = self._resubscribed
        self._publisher = asyncio.create_task(self._publish_outbox(), name="push-publisher")
        self._reader = asyncio.create_task(self._hear(), name="push-reader")

    async def stop(self) -> None:
        """Close every subscription, stop hearing commits, announce the last ones (for at most
        FLUSH_SECONDS: other replicas' listeners should hear of them), let go of the bus."""
        self.drain()
        self._journal.close()
        self._stopping = True
        self._outbox_ready.set()
        if self._publisher is not None:
            # asyncio.wait, not wait_for: a cancellation of stop() itself must not be swallowed.
            await asyncio.wait({self._publisher}, timeout=FLUSH_SECONDS)
            if not self._publisher.done():
                self._publisher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._publisher
        for task in (self._reader, self._resync):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._bus.aclose()

    @contextlib.asynccontextmanager
    async def listen(
        self, account_id: str, principal: Principal | None, types: frozenset[str] | None
    ) -> AsyncIterator[Subscription]:
        """A subscription to the account's changes, for as long as the block runs.

        It starts primed with the account's current states (read once the channel is
        subscribed), so :meth:`Subscription.next` yields only later changes; the caller
        sends its initial state itself and primes with what it sent. Raises the 429
        RequestError (limit ``maxPushConnections``) over this replica's limits, the 503
        problem while draining, and the Redis error when the channel or the states cannot be
        reached.
        """
        sub = await self.subscribe(account_id, principal, types)
        try:
            yield sub
        finally:
            await self.leave(sub)

    async def subscribe(
        self, account_id: str, principal: Principal | None, types: frozenset[str] | None
    ) -> Subscription:
        """What :meth:`listen` yields, for a caller that holds it across callbacks rather than
        a block (no context manager frame kept per connection): it must :meth:`leave` it."""
        self._admit(account_id)
        sub = Subscription(account_id, principal, types)
        self._listeners.setdefault(account_id, []).append(sub)
        self._count += 1
        self._svc.metrics.push_listeners.inc()
        try:
            self._demand.attach(account_id, principal)
            await self._bus.subscribe(account_id)
            sub.prime(await current_states(self._svc, account_id))
        except BaseException:
            await self.leave(sub)
            raise
        return sub

    def credentials_failed(self, account_id: str, principal: Principal) -> None:
        """The upstream refused these credentials: close the local subscriptions opened with
        them, from whichever client address (UNAUTHORIZED); token listeners and other
        credentials stay."""
        refused = _credentials(principal)
        for sub in list(self._listeners.get(account_id, ())):
            if sub.principal is not None and _credentials(sub.principal) == refused:
                sub.close(CloseReason.UNAUTHORIZED)

    def drain(self) -> None:
        """Close every subscription (SHUTDOWN) and refuse new ones (503)."""
        self._draining = True
        for subs in list(self._listeners.values()):
            for sub in list(subs):
                sub.close(CloseReason.SHUTDOWN)

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def listeners(self) -> int:
        return self._count

    def local_accounts(self) -> frozenset[str]:
        """Accounts with at least one listener on this replica."""
        return frozenset(self._listeners)

    # -- listeners ----------------------------------------------------------------------------

    def _admit(self, account_id: str) -> None:
        if self._draining:
            raise HttpProblem(
                problem(503, "Service Unavailable", "This server is shutting down."),
                {"Retry-After": RETRY_AFTER_SECONDS},
            )
        if self._count >= self.max_listeners:
            raise too_many_concurrent(
                "maxPushConnections",
                f"This server holds its {self.max_listeners} push connections; retry later.",
            )
        if len(self._listeners.get(account_id, ())) >= self.max_per_account:
            raise too_many_concurrent(
                "maxPushConnections",
                f"The account has {self.max_per_account} push connections on this server already.",
            )

    async def leave(self, sub: Subscription) -> None:
        """Take ``sub`` off the listeners; a second call does nothing."""
        sub.on_ready(None)
        subs = self._listeners.get(sub.account_id)
        if subs is None or sub not in subs:
            return
        subs.remove(sub)
        self._count -= 1
        self._svc.metrics.push_listeners.dec()
        self._demand.detach(sub.account_id, sub.principal)
        if not subs:
            del self._listeners[sub.account_id]
            # A listener arriving meanwhile subscribes after this (the bus serialises both).
            await self._bus.unsubscribe(sub.account_id)

    # -- commits out --------------------------------------------------------------------------

    def _committed(self, account_id: str, changes: Sequence[StateChange]) -> None:
        """The journal's listener: runs in the writer's call stack, so it never awaits and
        never raises; it only merges into the outbox and wakes the publisher."""
        try:
            states = self._outbox.get(account_id)
            if states is None:
                if len(self._outbox) >= MAX_OUTBOX:
                    del self._outbox[next(iter(self._outbox))]
                    self._svc.metrics.push_publish_failures.inc()
                states = self._outbox[account_id] = {}
            for change in changes:
                old = states.get(change.data_type)
                if old is None or newer(old, change.state):
                    states[change.data_type] = change.state
            self._outbox_ready.set()
        except Exception:
            log.exception("push: a committed change could not be queued")

    async def _publish_outbox(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            batch, self._outbox = self._outbox, {}
            for account_id, states in batch.items():
                if not await self._bus.publish(account_id, states):
                    self._svc.metrics.push_publish_failures.inc()
            if self._stopping and not self._outbox:
                return

    # -- announcements in ---------------------------------------------------------------------

    async def _hear(self) -> None:
        async for announcement in self._bus.messages():
            try:
                self._announced(announcement)
            except Exception:
                log.exception("push: an announcement could not be delivered")

    def _announced(self, announcement: Announcement) -> None:
        self._svc.metrics.push_announcements.labels(announcement.kind).inc()
        subs = self._listeners.get(announcement.account_id)
        if not subs:
            return
        if announcement.kind == "released":
            self._demand.released(announcement.account_id)
            return
        for sub in list(subs):
            sub.offer(announcement.changed)

    def _resubscribed(self) -> None:
        """The bus reconnected: what was published meanwhile is lost, so re-read."""
        self._svc.metrics.push_resyncs.inc()
        if self._resync is not None and not self._resync.done():
            self._resync_again = True
            return
        self._resync = asyncio.create_task(self._resync_all(), name="push-resync")

    async def _resync_all(self) -> None:
        """Offer every local account's current states to its listeners; each hears of the
        types whose state is newer than what it has. Accounts whose states could not be read
        (Redis still recovering) are tried again, backing off, while they have listeners."""
        accounts: list[str] | None = None
        delay = BACKOFF_FIRST_SECONDS
        while True:
            if accounts is None or self._resync_again:
                self._resync_again = False
                accounts = list(self._listeners)
            failed = await self._resync_accounts(accounts)
            if self._resync_again:
                continue
            accounts = [account_id for account_id in failed if account_id in self._listeners]
            if not accounts:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    async def _resync_accounts(self, accounts: list[str]) -> list[str]:
        """Offer the current states of ``accounts``, a batch at a time; those that failed."""
        failed: list[str] = []
        for start in range(0, len(accounts), RESYNC_BATCH):
            batch = accounts[start : start + RESYNC_BATCH]
            read = await asyncio.gather(
                *(current_states(self._svc, account_id) for account_id in batch),
                return_exceptions=True,
            )
            for account_id, states in zip(batch, read, strict=True):
                if isinstance(states, BaseException):
                    log.warning("push: resync read failed: %s", type(states).__name__)
                    failed.append(account_id)
                    continue
                for sub in list(self._listeners.get(account_id, ())):
                    sub.offer(states)
        return failed


def _credentials(principal: Principal) -> tuple[str, str, str]:
    """What makes two principals the same credentials: not the client address (Origin),
    which differs per connection."""
    credentials = principal.login.credentials
    return credentials.username, credentials.secret, credentials.mechanism.value
