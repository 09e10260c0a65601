"""The delivery worker: pushes that fell due, POSTed to their subscriptions' URLs (RFC 8620 7.2).

Pending pushes live in Redis (cache/push_subscriptions.py): per subscription, a PushVerification
owed since its creation or the StateChange states merged since its last push, and one
server-wide due queue. Every replica runs one :class:`Deliveries`; each claims due members
(re-scored to now + the lease, atomically, so no two replicas hold the same one), reads the
record and what is pending, sends, and reports what came of it:

* 2xx: delivered. What was sent leaves the pending entry; a state merged into it meanwhile
  stays, due again after the subscription's throttle.
* 429, 5xx, or no answer (refused connection, timeout): tried again after an exponential
  backoff with jitter, or after the reply's Retry-After if later (capped), up to
  MAX_ATTEMPTS, then that pending push is dropped (logged, counted).
* 404 or 410: the push service says the subscription is gone (RFC 8030 7.3): destroyed.
* any other status: that pending push is dropped (logged): sending it again would get the
  same answer.

A replica that dies mid-send holds its claims until their lease runs out; then they are due
again and another replica sends them: at least once (clients tolerate a repeat: a StateChange
names states, not events). What bounds the work: at most CONCURRENCY sends at once per
replica, each bounded in time and size by the client (webpush/client.py), claims taken only
for free slots, and one claim script every POLL_SECONDS when idle. At most
MAX_SENDS_PER_ACCOUNT of those sends belong to one account: a user whose push endpoints stall
holds a few slots, never all of them; that account's other claims wait (taking no slot) until
one of its sends ends. Encryption (one ECDH and one AES-GCM record of at most 4 KB) is cheap
enough for the event loop. Once a SWEEP_SECONDS the loop also erases expired subscriptions of
accounts whose owner never calls again (PushSubscriptions.sweep_expired).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable

from gateway.cache.push_subscriptions import Pending, PushSubscriptions, Subscription, is_live
from gateway.cache.store import STORE_UNAVAILABLE
from gateway.metrics import Metrics
from gateway.push import TypeStates
from gateway.push.states import newer
from gateway.webpush.client import (
    LookupsBusy,
    PushClient,
    PushUnreachable,
    Reply,
    longest_send_seconds,
)
from gateway.webpush.destinations import DestinationPolicy, RefusedDestination
from gateway.webpush.message import TooLarge, build
from gateway.webpush.vapid import Vapid

log = logging.getLogger(__name__)

# The longest sleep between looks at the due queue (pushes other replicas or retries made due).
POLL_SECONDS = 0.5
# Sends one process runs at once; claims are taken only for free slots.
CONCURRENCY = 32
# Sends of one account at once (review 17 M4): its other claims wait, taking no slot.
MAX_SENDS_PER_ACCOUNT = 4
# Claims waiting for their account's turn, all accounts together; past it a claim is left to
# its lease (due again after it). An account never has more than its subscriptions waiting.
MAX_WAITING = 1024
# How often (seconds) the loop erases expired subscriptions, and how many accounts at most
# each time (RFC 8620 7.2: the server MAY destroy a subscription once it expires; Redis runs
# without eviction, so nothing else would).
SWEEP_SECONDS = 60.0
SWEEP_LIMIT = 500
# Due pushes claimed by one claim script at most.
CLAIM_BATCH = 32
# How long a claim holds a push: past a send's own bound (the lookup within 5 s, then the
# client's connect and exchange, each within GATEWAY_WEBPUSH_TIMEOUT_SECONDS: see
# webpush/client.py longest_send_seconds) by LEASE_MARGIN_SECONDS, and at least
# LEASE_SECONDS, so a live replica settles before the push comes due for another one; a dead
# replica's claims are due again after this (see claim_lease_seconds()).
LEASE_SECONDS = 60.0
LEASE_MARGIN_SECONDS = 30.0
# Attempts at one pending push before it is dropped, and the backoff between them: the first
# delay, doubled each time up to the cap, each drawn between half of it and all of it (jitter,
# so that subscriptions that failed together do not retry together). 10 attempts span 8 to 17
# minutes.
MAX_ATTEMPTS = 10
BACKOFF_FIRST_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 900.0
# A send whose lookup found the push lookups busy (webpush/resolver.py: the account's other
# sends hold its share) is tried again after between half of this and all of it.
BUSY_RETRY_SECONDS = 2.0
# The longest Retry-After honoured: a push service asking for more is retried after this.
RETRY_AFTER_MAX_SECONDS = 3600.0
# On stop, how long sends in flight get to finish; the rest are cancelled and their claims come
# due again after the lease, on another replica. Within the 10 s the shutdown has after
# GATEWAY_SHUTDOWN_TIMEOUT_SECONDS (README, "Deployment"), side by side with the watchers' stop.
STOP_SECONDS = 3.0
# Wake-ups asked for by the enqueuer that the worker keeps at once; past it the poll suffices.
MAX_HINTS = 1024
# RFC 8030 5.4: a push message with a Topic replaces an undelivered one with the same topic at
# the push service, so a device that was offline gets the newest StateChange, not a backlog.
# A StateChange with the Topic therefore names the current state of EVERY type the
# subscription asks for, not only those that changed since the last push: the one that
# replaced an undelivered predecessor then still tells of the types only that one named. The
# parts of one cut to fit 4 KB name different types and must all arrive, so they go without a
# Topic (one Topic per part would still let part 1 of the next change replace part 1 of this
# one while its part 2 stays).
STATE_TOPIC = "jmap-state-change"

# The account's current state of each of these types (None: every type push knows) that the
# deployment serves: gateway.push.states.current_states.
StatesReader = Callable[[str, frozenset[str] | None], Awaitable[TypeStates]]
# RFC 8030 5.3. A PushVerification is sent once, while the client waits for it to finish
# setting up: high, so a device saving power still gets it at once. A StateChange is normal:
# new mail matters to the user but is no alarm.
URGENCY_VERIFICATION = "high"
URGENCY_STATE_CHANGE = "normal"


def _now_ms() -> int:
    return int(time.time() * 1000)


def claim_lease_seconds(timeout_seconds: float) -> float:
    """The claim's lease for a client bounded by ``timeout_seconds`` per phase."""
    return max(LEASE_SECONDS, longest_send_seconds(timeout_seconds) + LEASE_MARGIN_SECONDS)


def backoff_seconds(attempts: int, retry_after: float | None) -> float:
    """How long to wait before attempt ``attempts + 1``; at least the reply's Retry-After."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (attempts - 1))
    delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not a secret)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_MAX_SECONDS))
    return delay


def state_change(account_id: str, states: TypeStates) -> bytes:
    """RFC 8620 7.1: the StateChange of one account."""
    payload = {"@type": "StateChange", "changed": {account_id: states}}
    return json.dumps(payload, separators=(",", ":")).encode()


def push_verification(sub_id: str, code: str) -> bytes:
    """RFC 8620 7.2.2: what proves the client owns the URL."""
    payload = {"@type": "PushVerification", "pushSubscriptionId": sub_id, "verificationCode": code}
    return json.dumps(payload, separators=(",", ":")).encode()


class Deliveries:
    """The process's delivery worker (one per process, started with the services)."""

    def __init__(
        self,
        store: PushSubscriptions,
        client: PushClient,
        policy: DestinationPolicy,
        vapid: Vapid | None,
        metrics: Metrics,
        *,
        ttl_seconds: int,
        min_interval_seconds: float,
        lease_seconds: float = LEASE_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        concurrency: int = CONCURRENCY,
        per_account: int = MAX_SENDS_PER_ACCOUNT,
        stop_seconds: float = STOP_SECONDS,
        sweep_seconds: float = SWEEP_SECONDS,
        states: StatesReader | None = None,
    ) -> None:
        self._store = store
        self._states = states
        self._client = client
        self._policy = policy
        self._vapid = vapid
        self._metrics = metrics
        self._ttl = ttl_seconds
        self._min_interval_ms = round(min_interval_seconds * 1000)
        self._lease_ms = round(lease_seconds * 1000)
        self._poll = poll_seconds
        self._concurrency = concurrency
        self._per_account = per_account
        self._stop_seconds = stop_seconds
        self._sweep_seconds = sweep_seconds
        self._next_sweep = 0.0  # loop time
        self._sweeping: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._hints: list[float] = []  # loop times at which pushes fall due (a heap)
        self._sends: set[asyncio.Task[None]] = set()
        self._sending: Counter[str] = Counter()  # sends in flight per account
        # Claims waiting for their account's turn: account -> (subscription id, loop time
        # after which the claim is left to its lease).
        self._waiting: dict[str, deque[tuple[str, float]]] = {}
        self._held: set[tuple[str, str]] = set()  # claims sending or waiting
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="push-deliveries")

    def wake(self, after_seconds: float = 0.0) -> None:
        """Pushes fall due in ``after_seconds``: look at the queue then, not at the next poll."""
        if len(self._hints) < MAX_HINTS:
            heapq.heappush(self._hints, asyncio.get_running_loop().time() + after_seconds)
        self._wake.set()

    async def stop(self) -> None:
        """Claim nothing more; let the sends in flight finish for STOP_SECONDS, cancel the rest
        (their claims come due again after the lease, for another replica); close the client."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self._client.aclose()

    # -- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while not self._stopping:
                self._wake.clear()  # a wake from here on cuts the sleep below short
                self._sweep_soon()
                full = False
                try:
                    full = await self._claim()
                except STORE_UNAVAILABLE as exc:
                    log.warning("push deliveries: claim failed: %s", type(exc).__name__)
                except Exception:
                    # Whatever went wrong, the worker goes on: pushes must not stop for good.
                    log.exception("push deliveries: claim failed")
                if not full:
                    await self._sleep()
        finally:
            await self._finish_sends()

    async def _claim(self) -> bool:
        """Claim as many due pushes as there are free slots; whether every slot got one (then
        more may be due: claim again at once, or when a send finishes)."""
        free = self._concurrency - len(self._sends)
        if free <= 0:
            await self._wake.wait()
            return True
        limit = min(free, CLAIM_BATCH)
        claimed = await self._store.claim(_now_ms(), limit, self._lease_ms)
        # A waiting claim starts only while its lease still covers a whole send: later, it
        # may come due for another replica before this one settles it.
        until = (
            asyncio.get_running_loop().time()
            + self._lease_ms / 1000
            - self._client.longest_send_seconds
        )
        started = 0
        for account_id, sub_id in claimed:
            if (account_id, sub_id) in self._held:
                continue  # re-claimed after its lease while still here: one send is enough
            if self._sending[account_id] < self._per_account:
                self._start(account_id, sub_id)
                started += 1
            elif sum(map(len, self._waiting.values())) < MAX_WAITING:
                self._waiting.setdefault(account_id, deque()).append((sub_id, until))
                self._held.add((account_id, sub_id))
        # Claims that went waiting took no slot: claim again while any was started.
        return len(claimed) >= limit and started > 0

    def _start(self, account_id: str, sub_id: str) -> None:
        self._held.add((account_id, sub_id))
        self._sending[account_id] += 1
        task = asyncio.create_task(self._deliver(account_id, sub_id), name="push-delivery")
        self._sends.add(task)
        task.add_done_callback(lambda done: self._sent(done, account_id, sub_id))

    def _sent(self, task: asyncio.Task[None], account_id: str, sub_id: str) -> None:
        self._sends.discard(task)
        self._held.discard((account_id, sub_id))
        self._sending[account_id] -= 1
        if self._sending[account_id] <= 0:
            del self._sending[account_id]
        self._wake.set()  # a free slot
        if not task.cancelled() and task.exception() is not None:
            log.error("push deliveries: a delivery failed", exc_info=task.exception())
        if not self._stopping:
            self._next_waiting(account_id)

    def _next_waiting(self, account_id: str) -> None:
        """Start the account's next waiting claim whose lease still holds (later ones are due
        again after their lease, for whichever replica then claims them)."""
        waiting = self._waiting.get(account_id)
        now = asyncio.get_running_loop().time()
        while waiting:
            sub_id, until = waiting.popleft()
            self._held.discard((account_id, sub_id))
            if until > now:
                self._start(account_id, sub_id)
                break
        if not waiting:
            self._waiting.pop(account_id, None)

    def _sweep_soon(self) -> None:
        """Erase expired subscriptions (bounded), at most once a SWEEP_SECONDS, beside the
        claims (a task of its own: sends never wait for it)."""
        now = asyncio.get_running_loop().time()
        if now < self._next_sweep or self._sweeping is not None:
            return
        self._next_sweep = now + self._sweep_seconds
        self._sweeping = asyncio.create_task(self._sweep(), name="push-sweep")

    async def _sweep(self) -> None:
        try:
            swept = await self._store.sweep_expired(int(time.time()), SWEEP_LIMIT)
        except STORE_UNAVAILABLE as exc:
            log.warning("push deliveries: sweep failed: %s", type(exc).__name__)
            return
        except Exception:
            # Like a failed claim: the deliveries go on, the sweep is tried again later.
            log.exception("push deliveries: sweep failed")
            return
        finally:
            self._sweeping = None
        if swept:
            log.info("push deliveries: erased expired subscriptions of %d accounts", swept)

    async def _sleep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._hints and self._hints[0] <= now:
            heapq.heappop(self._hints)
        seconds = self._poll if not self._hints else min(self._poll, self._hints[0] - now)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _finish_sends(self) -> None:
        # Waiting claims come due again after their lease, for another replica.
        self._waiting.clear()
        sweeping = self._sweeping
        if sweeping is not None:
            sweeping.cancel()
            await asyncio.gather(sweeping, return_exceptions=True)
        if not self._sends:
            return
        _, late = await asyncio.wait(set(self._sends), timeout=self._stop_seconds)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    # -- one subscription ---------------------------------------------------------------------

    async def _deliver(self, account_id: str, sub_id: str) -> None:
        try:
            await self._deliver_claimed(account_id, sub_id)
        except STORE_UNAVAILABLE as exc:
            # Nothing settled: the claim comes due again after its lease (the push may then
            # go twice, which clients tolerate).
            kind = type(exc).__name__
            log.warning("push subscription %s: delivery not settled: %s", sub_id, kind)

    async def _deliver_claimed(self, account_id: str, sub_id: str) -> None:
        record, pending = await self._store.pending(account_id, sub_id)
        if record is None or not is_live(record, time.time()):
            # RFC 8620 7.2: no request after expires; gone or expired, it is erased (and its
            # due entry with it).
            await self._store.destroy(account_id, sub_id)
            self._metrics.webpush_outcome("expired" if record is not None else "gone")
            return
        if pending is None:
            await self._store.drop(
                account_id, sub_id, None, now_ms=_now_ms(), min_interval_ms=self._min_interval_ms
            )
            return
        try:
            await self._send(account_id, sub_id, record, pending)
        except STORE_UNAVAILABLE:
            raise
        except Exception as exc:
            # Review 17 L3: whatever it was (a record the code cannot use, a bug), it counts as
            # a failed attempt: backoff, then dropped after MAX_ATTEMPTS, instead of the claim
            # coming back every lease for ever. Only the type is logged: a message may hold
            # the URL, which is a capability.
            log.error(
                "push subscription %s: delivery failed (%s): counted as a failed attempt",
                sub_id,
                type(exc).__name__,
            )
            await self._retry(account_id, sub_id, pending, None)

    async def _send(
        self, account_id: str, sub_id: str, record: Subscription, pending: Pending
    ) -> None:
        current: TypeStates = {}
        if record["verified"] and pending.get("changed") and self._states is not None:
            types = record["types"]
            current = await self._states(account_id, None if types is None else frozenset(types))
        what = self._message(account_id, sub_id, record, pending, current)
        if what is None:
            await self._drop(account_id, sub_id, pending, "nothing")
            return
        body, headers, sent = what
        try:
            reply = await self._client.post(record["url"], body, headers, self._policy, account_id)
        except RefusedDestination as exc:
            log.warning("push subscription %s: destination refused: %s", sub_id, exc.reason)
            await self._drop(account_id, sub_id, pending, "refused")
            return
        except LookupsBusy as exc:
            # The account's other sends hold its lookups (or everyone's are busy): soon again,
            # still counted, so lookups that never end cannot keep a push going for ever.
            log.info("push subscription %s: %s", sub_id, exc)
            await self._retry(account_id, sub_id, pending, None, busy=True)
            return
        except PushUnreachable as exc:
            log.info("push subscription %s: push service unreachable: %s", sub_id, exc)
            await self._retry(account_id, sub_id, pending, None)
            return
        await self._answered(account_id, sub_id, pending, sent, reply)

    def _message(
        self,
        account_id: str,
        sub_id: str,
        record: Subscription,
        pending: Pending,
        current: TypeStates,
    ) -> tuple[bytes, dict[str, str], Pending] | None:
        """The body and headers to POST, and the pending entry they deliver (a StateChange cut
        to fit the 4 KB limit delivers only the types it names); None: nothing may be sent.
        ``current``: the account's states of the subscription's types, which a whole
        StateChange names too (see STATE_TOPIC)."""
        keys = record["keys"]
        url = record["url"]
        if not record["verified"]:
            # RFC 8620 7.2: no request but the PushVerification until the client set the code.
            if not pending.get("verify"):
                return None
            payload = push_verification(sub_id, record["verificationCode"])
            try:
                body, headers = build(
                    payload,
                    keys,
                    ttl=self._ttl,
                    urgency=URGENCY_VERIFICATION,
                    vapid=self._vapid,
                    url=url,
                )
            except TooLarge:  # a code of 32 hex digits: cannot happen, but never loops
                return None
            return body, headers, pending
        changed: TypeStates = dict(pending.get("changed") or {})
        if not changed:
            return None
        complete = dict(current)
        for name, state in changed.items():
            if name not in complete or newer(complete[name], state):
                complete[name] = state
        names = sorted(changed)
        while names:
            whole = len(names) == len(changed)
            states = complete if whole else {name: changed[name] for name in names}
            try:
                body, headers = build(
                    state_change(account_id, states),
                    keys,
                    ttl=self._ttl,
                    urgency=URGENCY_STATE_CHANGE,
                    vapid=self._vapid,
                    url=url,
                    topic=STATE_TOPIC if whole else None,
                )
            except TooLarge:
                # RFC 8030 7.2 / push services: at most 4096 octets, encryption included. The
                # states are what the client needs, so fewer types go now, the rest next time.
                names.pop()
                continue
            sent = Pending(**pending)
            sent["changed"] = {name: changed[name] for name in names}
            return body, headers, sent
        return None

    async def _answered(
        self,
        account_id: str,
        sub_id: str,
        pending: Pending,
        sent: Pending,
        reply: Reply,
    ) -> None:
        status = reply.status
        if 200 <= status < 300:
            await self._store.delivered(
                account_id, sub_id, sent, now_ms=_now_ms(), min_interval_ms=self._min_interval_ms
            )
            self._metrics.webpush_outcome("delivered")
        elif status in (404, 410):
            # RFC 8030 7.3 (and 8.3 for 404): the push subscription expired or was removed.
            log.info("push subscription %s: the push service answered %d: gone", sub_id, status)
            await self._store.destroy(account_id, sub_id)
            self._metrics.webpush_outcome("gone")
        elif status == 429 or status >= 500:
            # RFC 8620 7.2: a 429 MUST reduce the frequency of pushes.
            await self._retry(account_id, sub_id, pending, reply.retry_after)
        else:
            log.warning("push subscription %s: the push service answered %d", sub_id, status)
            await self._drop(account_id, sub_id, pending, "rejected")

    async def _retry(
        self,
        account_id: str,
        sub_id: str,
        pending: Pending,
        retry_after: float | None,
        *,
        busy: bool = False,
    ) -> None:
        attempts = int(pending.get("attempts", 0)) + 1
        if attempts >= MAX_ATTEMPTS:
            log.warning("push subscription %s: given up after %d attempts", sub_id, attempts)
            await self._drop(account_id, sub_id, pending, "gave_up")
            return
        if busy:
            delay = random.uniform(BUSY_RETRY_SECONDS / 2, BUSY_RETRY_SECONDS)  # noqa: S311
        else:
            delay = backoff_seconds(attempts, retry_after)
        due = _now_ms() + round(delay * 1000)
        await self._store.retry_at(account_id, sub_id, due, attempts)
        self._metrics.webpush_outcome("retry")

    async def _drop(self, account_id: str, sub_id: str, pending: Pending, outcome: str) -> None:
        """Forget this pending push (what was merged into it since it was read stays)."""
        await self._store.drop(
            account_id, sub_id, pending, now_ms=_now_ms(), min_interval_ms=self._min_interval_ms
        )
        self._metrics.webpush_outcome(outcome)
