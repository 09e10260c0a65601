"""Which replica watches which account upstream: exactly one per account someone listens to.

The hub tells the manager of each local listener (attach/detach). Every tick (a third of
GATEWAY_PUSH_WATCH_LEASE_SECONDS, with jitter) the manager, in one pipeline each:

* heartbeats its demand for the accounts it has listeners of (cache.watches), which also says
  which of them nobody watches;
* renews the watch leases it holds; a lease lost stops its watcher at once;
* stops the watchers of accounts nobody listens to any more, anywhere;
* probes a slice of the other accounts whose credentials its keeper holds (a token minted
  here, its listener on another replica), PROBES_PER_TICK at a time, in turn;
* takes the leases of the accounts found wanted and unwatched that it has credentials for
  (and of those another replica announced released), at most STARTS_PER_ROUND per round,
  the rest a START_PAUSE_SECONDS later, and starts their watchers.

A tick therefore costs, in Redis commands (each group one pipeline): one EVAL per account with
local listeners, one EVAL and one ZCOUNT per lease held, at most PROBES_PER_TICK read-only
EVALs, and one EVAL per lease tried (accounts found wanted and unwatched, or released), at
most STARTS_PER_ROUND. Nothing scales with the keeper's accounts.

What bounds the upstream connections: ImapPool.dedicated, which a watcher logs in with, has no
limit of its own. A watcher runs only under a lease (one per account cluster-wide), a lease is
taken only for an account some listener wants (listeners are bounded per replica and per
account by the hub) or, with background watching, that has verified push subscriptions (at
most MAX_BACKGROUND_WATCHERS such watchers per replica), and at most STARTS_PER_ROUND watchers
start per round, so a takeover of a dead replica's accounts or a rolling restart does not log
in to the upstream all at once.
Reconnects after a failure are spread by the watcher's jittered backoff.

A listener arriving or leaving wakes the manager at once, so an account's first listener gets
its watcher without waiting for the tick, and the last one leaving withdraws the replica's
demand at once. A replica that dies stops renewing: its leases expire within the lease time
and a replica with listeners and credentials takes them over at its next tick (with only
credentials, once its probe comes round to the account). A watcher whose credentials the upstream
refuses tells the hub (which closes the listeners that brought them), forgets them, and tries
the keeper's other credentials for the account; with none left it lets the lease go and says
so on the bus, so another replica with credentials takes over.

Subscribed accounts (issue 17; push/background.py): with a master user configured, an account
with unexpired verified push subscriptions and a login name is wanted watched too, whoever
listens. Every full tick the manager reads the next PAGE_SIZE of them (one ZRANGE of
``jg:push-subscribed``, in turn from a cursor) and which of those name a login and have no
lease (one read-only EVAL each); it takes the leases of some of them (shuffled, so replicas
paging alike do not all reach for the same ones; within the same STARTS_PER_ROUND as the
rest, at most MAX_BACKGROUND_WATCHERS such watchers per replica) with a plain SET NX PX, and
their watchers log in as the master user acting for the user (checked to reach the very
account first). The keeper's credentials of listeners, where a replica holds some, stay
preferred: the master login is tried after them. A watcher ends when its account is neither
listened to nor subscribed any more (checked at each full tick, one ZSCORE and one EXISTS per
watched account not listened to). A background login that fails lets the lease go without
announcing it (every replica would try again at once): the others come to the account in
their own pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.auth import Principal
from gateway.cache.pushbus import PushBus
from gateway.cache.store import STORE_UNAVAILABLE
from gateway.cache.watches import WatchLease, WatchStore
from gateway.push.background import MAX_BACKGROUND_WATCHERS, PAGE_SIZE, BackgroundLogins
from gateway.push.keeper import CredentialKeeper, CredentialKey, credential_key
from gateway.push.watcher import event_within, watch_account

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger(__name__)

# Seconds stop() waits in all: the manager's loop first (at most LOOP_STOP_SECONDS of it),
# then the watchers leaving IDLE and logging out (milliseconds, unless a catch-up is in
# progress: it may finish first); whatever is late is cancelled (its connection cut, not
# logged out). Releasing the leases of those cancelled and withdrawing the demand follow
# (Redis commands, each within the command timeout). Small because it is part of the 10 s
# the shutdown has after GATEWAY_SHUTDOWN_TIMEOUT_SECONDS (the pod's grace period is
# preStop + GATEWAY_PUSH_DRAIN_SECONDS + GATEWAY_SHUTDOWN_TIMEOUT_SECONDS + 10).
STOP_GRACE_SECONDS = 4.0
LOOP_STOP_SECONDS = 1.0
# Watchers started per round at most (upstream LOGINs and first catch-ups at once); the rest
# wait START_PAUSE_SECONDS for the next round.
STARTS_PER_ROUND = 16
START_PAUSE_SECONDS = 1.0
# Accounts with credentials here but no local listener, probed per tick for a wanted,
# unwatched lease (one read-only EVAL each).
PROBES_PER_TICK = 500
# Pause after a round that failed unexpectedly (a bug), before the next.
FAILED_ROUND_PAUSE_SECONDS = 1.0


@dataclass(eq=False)
class _Watch:
    """A lease held and the watcher task running under it."""

    lease: WatchLease
    renewed: float  # loop time of the last renewal that succeeded
    until: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    lost: bool = False  # the lease is gone: nothing to release
    unwanted: bool = False  # nobody listens anywhere: nobody to tell of the release
    # Kept for subscriptions alone (MAX_BACKGROUND_WATCHERS): taken for them, or taken for
    # listeners who have all left since.
    background: bool = False
    quiet: bool = False  # let go without telling anyone (a background login failed)
    refused: Principal | None = None  # the master user's login the upstream refused


class WatchManager:
    """The replica's side of the watch protocol; see the module docstring. Implements the
    hub's WatchDemand."""

    def __init__(
        self,
        svc: Services,
        store: WatchStore,
        keeper: CredentialKeeper,
        bus: PushBus,
        background: BackgroundLogins | None = None,
    ) -> None:
        """``svc.push`` (the hub, which is told of refused credentials) may be set after
        this: the hub needs its demand when it is made. ``background``: subscribed accounts
        are watched too, with its logins (None: no master user configured)."""
        self._svc = svc
        self._background = background
        self._store = store
        self._keeper = keeper
        self._bus = bus
        self._ttl = svc.settings.push_watch_lease_seconds
        # Local listeners per account, by the credentials they brought (None: a push token).
        self._listeners: dict[str, dict[Principal | None, int]] = {}
        # Credentials of local listeners that the upstream refused (not refreshed any more).
        self._refused: set[CredentialKey] = set()
        self._watches: dict[str, _Watch] = {}
        # What happened since the last round: accounts that got their first local listener
        # (or were released elsewhere), and accounts that lost their last one.
        self._arrived: set[str] = set()
        self._left: set[str] = set()
        # Accounts found wanted and unwatched, left over for the next round (STARTS_PER_ROUND).
        self._pending: set[str] = set()
        self._probe_at = 0  # where in the keeper's accounts the next probe starts
        # Subscribed accounts found unwatched, left over for the next round; and where in
        # jg:push-subscribed the next page starts.
        self._pending_background: set[str] = set()
        self._page_at = 0
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- WatchDemand (called by the hub, synchronously) ---------------------------------------

    def attach(self, account_id: str, principal: Principal | None) -> None:
        """A local listener of ``account_id`` opened (``principal`` None: a token listener)."""
        if principal is not None:
            self._keeper.remember(account_id, principal)
        listeners = self._listeners.get(account_id)
        if listeners is None:
            listeners = self._listeners[account_id] = {}
            self._arrived.add(account_id)
            self._left.discard(account_id)
            self._wake.set()
        listeners[principal] = listeners.get(principal, 0) + 1

    def detach(self, account_id: str, principal: Principal | None) -> None:
        """A local listener of ``account_id`` closed."""
        listeners = self._listeners.get(account_id)
        if listeners is None or principal not in listeners:
            return
        listeners[principal] -= 1
        if listeners[principal] == 0:
            del listeners[principal]
            if principal is not None and not any(
                p is not None and credential_key(p) == credential_key(principal) for p in listeners
            ):
                self._refused.discard(credential_key(principal))
        if not listeners:
            del self._listeners[account_id]
            self._left.add(account_id)
            self._arrived.discard(account_id)
            self._wake.set()

    def released(self, account_id: str) -> None:
        """Another replica let the account's lease go: be a candidate now, not at the tick."""
        self._arrived.add(account_id)
        self._wake.set()

    # -- lifecycle -----------------------------------------------------------------------------

    def watching(self) -> frozenset[str]:
        """The accounts this replica watches upstream now."""
        return frozenset(self._watches)

    async def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._run(), name="push-watch-manager")

    async def stop(self) -> None:
        """Stop every watcher (each leaves IDLE and logs out), let their leases go (and say
        so, for other replicas to take over) and withdraw this replica's demand.

        Waits STOP_GRACE_SECONDS at most for the loop and the watchers together, plus the
        Redis commands that release and withdraw (each within the command timeout)."""
        # Told, not only cancelled: redis-py's asyncio client can swallow a cancellation that
        # arrives during a command (the command then returns as if nothing happened).
        self._stopping = True
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE_SECONDS
        if self._loop_task is not None:
            _, late = await asyncio.wait({self._loop_task}, timeout=LOOP_STOP_SECONDS)
            for task in late:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        watches = list(self._watches.values())
        await self._stop_watchers(watches, max(0.0, deadline - loop.time()))
        with contextlib.suppress(*STORE_UNAVAILABLE):
            for account_id in list(self._listeners):
                await self._store.withdraw(self._svc.replica_id, account_id)

    # -- the rounds ---------------------------------------------------------------------------

    async def _run(self) -> None:
        """The rounds, until stop(). Survives any exception (logged with its type; a bug gets
        a pause before the next round); if
        it ends any other way (cancelled), its watchers stop too: nobody would renew their
        leases, and another replica would start a second watcher once they expired."""
        loop = asyncio.get_running_loop()
        tick = self._ttl / 3
        next_full = loop.time()
        try:
            while not self._stopping:
                full = loop.time() >= next_full
                if full:
                    next_full = loop.time() + tick * random.uniform(0.85, 1.0)  # noqa: S311
                pause = 0.0
                try:
                    await self._round(full)
                except STORE_UNAVAILABLE as exc:
                    log.warning("push watch round failed: %s", type(exc).__name__)
                except Exception as exc:
                    log.exception("push watch round failed: %s", type(exc).__name__)
                    pause = FAILED_ROUND_PAUSE_SECONDS
                if self._stopping:
                    break
                wait = max(pause, next_full - loop.time())
                if self._pending or self._pending_background:
                    wait = min(wait, max(pause, START_PAUSE_SECONDS))
                await event_within(self._wake, wait)
        finally:
            if not self._stopping:
                for watch in self._watches.values():
                    watch.until.set()

    async def _round(self, full: bool) -> None:
        self._wake.clear()
        arrived, self._arrived = self._arrived, set()
        left, self._left = self._left, set()
        replica = self._svc.replica_id
        if full:
            self._stop_stale()
            self._refresh_credentials()
        beating = list(self._listeners) if full else [a for a in arrived if a in self._listeners]
        free = await self._store.heartbeat(replica, beating, self._ttl)
        for account_id in left:
            await self._store.withdraw(replica, account_id)
        if full:
            await self._renew()
        await self._end_unwanted(list(self._watches) if full else list(left))
        # Released elsewhere (heard for accounts with local listeners): the lease may be free.
        released = {a for a in arrived if a not in beating}
        if full:
            free |= await self._store.wanted(self._probe())
        unclaimed, started = await self._take(free | released)
        if self._background is not None:
            if full:
                unclaimed |= await self._page()
            await self._take_background(self._background, unclaimed, STARTS_PER_ROUND - started)

    def _probe(self) -> list[str]:
        """The next PROBES_PER_TICK of the keeper's accounts that have no local listener and
        no watcher here, in turn (those with local listeners are heartbeaten anyway)."""
        accounts = self._keeper.accounts()
        if self._probe_at >= len(accounts):
            self._probe_at = 0
        probed: list[str] = []
        while self._probe_at < len(accounts) and len(probed) < PROBES_PER_TICK:
            account_id = accounts[self._probe_at]
            self._probe_at += 1
            if account_id not in self._listeners and account_id not in self._watches:
                probed.append(account_id)
        return probed

    def _stop_stale(self) -> None:
        """Leases not renewed for a whole ttl (Redis unreachable) may be another's now."""
        now = asyncio.get_running_loop().time()
        for watch in self._watches.values():
            if now - watch.renewed > self._ttl:
                watch.lost = True
                watch.until.set()

    def _refresh_credentials(self) -> None:
        """Credentials of listeners still connected stay the keeper's newest."""
        for account_id, listeners in self._listeners.items():
            for principal in listeners:
                if principal is not None and credential_key(principal) not in self._refused:
                    self._keeper.remember(account_id, principal)

    async def _renew(self) -> None:
        watches = list(self._watches.values())
        renewed = await self._store.renew_all([w.lease for w in watches])
        now = asyncio.get_running_loop().time()
        for watch, ok in zip(watches, renewed, strict=True):
            if ok:
                watch.renewed = now
            else:
                log.info("push watch lease of %s lost", watch.lease.account_id)
                watch.lost = True
                watch.until.set()

    async def _end_unwanted(self, account_ids: list[str]) -> None:
        """Stop watching those of ``account_ids`` nobody listens to any more, anywhere (and,
        with background watching, whose subscriptions are gone). A watcher kept for
        subscriptions alone counts against MAX_BACKGROUND_WATCHERS however it started (a
        listener's watcher whose listeners left may run as long as the subscriptions live):
        past the bound the newest of them stop, quietly, for a replica with room to page
        them in."""
        watched = [a for a in account_ids if a in self._watches]
        demanded = await self._store.demanded(watched)
        subscribed: set[str] = set()
        if self._background is not None:
            subscribed = await self._store.subscribed([a for a in watched if a not in demanded])
        became: list[_Watch] = []
        for account_id in watched:
            watch = self._watches[account_id]
            if account_id in demanded:
                watch.background = False
            elif account_id in subscribed:
                if not watch.background:
                    watch.background = True
                    became.append(watch)
            else:
                watch.unwanted = True
                watch.until.set()
        over = sum(w.background and not w.until.is_set() for w in self._watches.values())
        over -= MAX_BACKGROUND_WATCHERS
        for watch in reversed(became[-over:] if over > 0 else []):
            log.info(
                "push watcher of %s stops: more than %d accounts watched for subscriptions alone",
                watch.lease.account_id,
                MAX_BACKGROUND_WATCHERS,
            )
            watch.quiet = True
            watch.until.set()

    async def _take(self, account_ids: set[str]) -> tuple[set[str], int]:
        """Take the leases of those of ``account_ids`` (and of those left over from the last
        round) this replica has credentials for, someone wants watched and nobody watches;
        start their watchers, STARTS_PER_ROUND at most, leaving the rest for the next round.
        Returns those of ``account_ids`` unwatched here that it has no credentials for (for
        background watching), and how many watchers it started."""
        unwatched = sorted(a for a in account_ids | self._pending if a not in self._watches)
        candidates: list[str] = []
        uncredited: set[str] = set()
        for account_id in unwatched:
            if self._keeper.candidates(account_id):
                candidates.append(account_id)
            elif account_id in account_ids:
                uncredited.add(account_id)
        self._pending = set(candidates[STARTS_PER_ROUND:])
        candidates = candidates[:STARTS_PER_ROUND]
        taken = await self._store.take_many(candidates, self._svc.replica_id, self._ttl)
        self._start(taken, background=False)
        return uncredited, len(taken)

    async def _page(self) -> set[str]:
        """The next PAGE_SIZE subscribed accounts that name a login and nobody watches."""
        page = await self._store.subscribed_page(self._page_at, PAGE_SIZE)
        self._page_at = 0 if len(page) < PAGE_SIZE else self._page_at + PAGE_SIZE
        return await self._store.free_subscribed([a for a in page if a not in self._watches])

    async def _take_background(
        self, background: BackgroundLogins, account_ids: set[str], starts: int
    ) -> None:
        """Take the leases of some of ``account_ids`` (and of those left over) that are
        subscribed and unwatched, ``starts`` at most and within MAX_BACKGROUND_WATCHERS; their
        watchers log in with the background principal. Shuffled: replicas reading the same
        page then reach for different accounts."""
        room = MAX_BACKGROUND_WATCHERS - sum(
            w.background and not w.until.is_set() for w in self._watches.values()
        )
        pool = [
            a
            for a in account_ids | self._pending_background
            if a not in self._watches and background.may_try(a)
        ]
        if room <= 0 or not pool:
            self._pending_background = set()
            return
        random.shuffle(pool)
        limit = max(0, min(starts, room))
        subscribed = await self._store.subscribed(pool)
        candidates = [a for a in pool if a in subscribed]
        self._pending_background = set(candidates[limit:])
        taken = await self._store.take_free(candidates[:limit], self._svc.replica_id, self._ttl)
        self._start(taken, background=True)

    def _start(self, taken: dict[str, WatchLease], *, background: bool) -> None:
        now = asyncio.get_running_loop().time()
        for account_id, lease in taken.items():
            watch = _Watch(lease, renewed=now, background=background)
            self._watches[account_id] = watch
            watch.task = asyncio.create_task(self._watch(account_id, watch), name="push-watcher")
            self._svc.metrics.watch_taken()
        self._svc.metrics.watched_accounts(len(self._watches))

    # -- one account's watcher ----------------------------------------------------------------

    async def _watch(self, account_id: str, watch: _Watch) -> None:
        """Run the watcher with each of the keeper's credentials for the account in turn
        until one holds; then let the lease go unless it was lost."""
        tried: set[CredentialKey] = set()
        failed = False
        background = self._background
        try:
            while not watch.until.is_set():
                fresh = [
                    p for p in self._keeper.candidates(account_id) if credential_key(p) not in tried
                ]
                if fresh:
                    tried.add(credential_key(fresh[0]))
                    await watch_account(
                        self._svc,
                        account_id,
                        fresh[0],
                        watch.until,
                        on_auth_failed=lambda p: self._auth_failed(account_id, p),
                    )
                    continue
                # The listeners' credentials are spent: the master user's login, once.
                principal = None if background is None else await background.principal(account_id)
                if background is None or principal is None:
                    watch.quiet = background is not None and not tried
                    break
                await watch_account(
                    self._svc,
                    account_id,
                    principal,
                    watch.until,
                    on_auth_failed=lambda p: self._background_refused(watch, p),
                )
                if watch.refused is not None:
                    await background.refused(account_id, watch.refused)
                break
        except Exception:
            # A bug, not upstream or Redis trouble (the watcher retries those): the lease
            # goes back unannounced, and this or another replica starts afresh at a later
            # round (announcing would have every replica retry at once, again and again).
            log.exception("push watcher of %s failed", account_id)
            failed = True
        finally:
            if self._watches.get(account_id) is watch:
                del self._watches[account_id]
            self._svc.metrics.watched_accounts(len(self._watches))
        if not watch.lost:
            await self._release(watch, announce=not (watch.unwanted or watch.quiet or failed))

    @staticmethod
    def _background_refused(watch: _Watch, principal: Principal) -> None:
        """The master user's login stopped working: let the lease go quietly (every replica
        would otherwise try the same refused login at once), after telling the background
        logins (who decide whether the account or the master user was refused)."""
        watch.quiet = True
        watch.refused = principal

    def _auth_failed(self, account_id: str, principal: Principal) -> None:
        self._keeper.forget(account_id, principal)
        key = credential_key(principal)
        listeners = self._listeners.get(account_id, {})
        if any(p is not None and credential_key(p) == key for p in listeners):
            self._refused.add(key)  # until those listeners, which the hub closes, detach
        self._svc.push.credentials_failed(account_id, principal)

    async def _release(self, watch: _Watch, *, announce: bool) -> None:
        """Let the lease go; with ``announce``, tell the other replicas, which may still
        have listeners and credentials."""
        account_id = watch.lease.account_id
        try:
            await watch.lease.release()
            if announce:
                await self._bus.publish_released(account_id)
        except STORE_UNAVAILABLE as exc:
            log.warning("push watch lease of %s not released: %s", account_id, type(exc).__name__)

    async def _stop_watchers(self, watches: list[_Watch], grace: float) -> None:
        for watch in watches:
            watch.until.set()
        tasks = [w.task for w in watches if w.task is not None]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=grace) if grace > 0 else (set(), set(tasks))
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for watch in watches:
            if watch.task in late and not watch.lost:
                await self._release(watch, announce=True)
