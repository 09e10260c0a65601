"""The push hub on one real Redis: commits here and on another replica reach listeners,
limits, drain, credentials, and what a lost pub/sub connection costs (nothing: a resync).

Ground truth is Redis itself (the account's states as /get reads them) and what the other
process printed; nothing is mocked. A test double stands in for the watch manager (part C),
recording what the hub tells it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis.asyncio

from gateway.auth import Principal
from gateway.cache.journal import Journal
from gateway.cache.keys import AccountKeys
from gateway.cache.pushbus import PushBus
from gateway.credentials import Credentials, Origin
from gateway.imap.pool import Login
from gateway.jmap.errors import RequestError
from gateway.problems import HttpProblem, describe
from gateway.push import PUSH_TYPES, CloseReason
from gateway.push.hub import MAX_OUTBOX, Closed, Subscription
from gateway.push.states import current_states
from tests.conftest import serving
from tests.push.blackhole import Blackhole
from tests.push.harness import commit_elsewhere, commit_here, replica
from tests.servers import RedisServer, make_data_dir

WAIT = 10.0


def account() -> str:
    return "a" + secrets.token_hex(6)


def principal(account_id: str, user: str, port: int | None = None) -> Principal:
    """A caller's principal; ``port``: the client port their connection came from."""
    origin = Origin("192.0.2.7", port) if port is not None else None
    credentials = Credentials(user, f"pw-{user}", origin=origin)
    return Principal(Login(f"id-{user}", credentials), account_id)


async def until_changed(sub: Subscription, data_type: str, state: str) -> None:
    """Read ``sub`` until it reports ``state`` for ``data_type`` (a resync may come first)."""
    async with asyncio.timeout(WAIT):
        while True:
            changed = await sub.next(WAIT)
            if changed and changed[sub.account_id].get(data_type) == state:
                return


@dataclass
class RecordingDemand:
    """Stands in for the watch manager (push/watch.py): what the hub told it, in order."""

    calls: list[tuple[str, str, Principal | None]] = field(default_factory=list)

    def attach(self, account_id: str, principal: Principal | None) -> None:
        self.calls.append(("attach", account_id, principal))

    def detach(self, account_id: str, principal: Principal | None) -> None:
        self.calls.append(("detach", account_id, principal))

    def released(self, account_id: str) -> None:
        self.calls.append(("released", account_id, None))


async def test_a_commit_on_another_replica_reaches_a_listener_here(redis_url: str) -> None:
    acc = account()
    async with replica(redis_url) as svc, svc.push.listen(acc, None, None) as sub:
        state = await commit_elsewhere(redis_url, acc, "Email", "e1")
        assert await sub.next(WAIT) == {acc: {"Email": state}}
        # What /get reads now is what was pushed.
        assert (await current_states(svc, acc, frozenset({"Email"}))) == {"Email": state}
        assert svc.metrics.push_announcements.labels("changed")._value.get() >= 1


async def test_a_local_commit_reaches_a_local_listener_through_redis(redis_url: str) -> None:
    acc = account()
    channel = AccountKeys(acc).push_channel
    admin = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with replica(redis_url) as svc:
            async with svc.push.listen(acc, None, None) as sub, svc.push.listen(acc, None, None):
                # One subscription of the channel for the replica, however many listeners.
                assert await admin.pubsub_numsub(channel) == [(channel.encode(), 1)]
                heard = svc.metrics.push_announcements.labels("changed")._value.get()
                state = await commit_here(svc, acc, "Mailbox", "m1")
                assert await sub.next(WAIT) == {acc: {"Mailbox": state}}
                # It came back from Redis (one path for local and remote listeners).
                assert svc.metrics.push_announcements.labels("changed")._value.get() == heard + 1
            # The last listener gone, the channel is let go.
            async with asyncio.timeout(WAIT):
                while await admin.pubsub_numsub(channel) != [(channel.encode(), 0)]:
                    await asyncio.sleep(0.02)
    finally:
        await admin.aclose()


async def test_listeners_hear_only_their_types_and_their_account(redis_url: str) -> None:
    acc, other = account(), account()
    async with (
        replica(redis_url) as svc,
        svc.push.listen(acc, None, frozenset({"Email"})) as emails,
        svc.push.listen(acc, None, None) as everything,
        svc.push.listen(other, None, None) as elsewhere,
    ):
        mailbox = await commit_here(svc, acc, "Mailbox", "m1")
        email = await commit_here(svc, acc, "Email", "e1")
        assert await emails.next(WAIT) == {acc: {"Email": email}}
        await until_changed(everything, "Email", email)
        assert everything.known()["Mailbox"] == mailbox
        assert await elsewhere.next(0.5) is None
        # A listener starts primed with the current states: it is told only of later ones.
        assert elsewhere.known() == await current_states(svc, other)
        # No SMTP here: Identity and EmailSubmission are not offered, so never pushed.
        assert set(elsewhere.known()) == PUSH_TYPES - {"Identity", "EmailSubmission"}


async def test_listener_limits_per_replica_and_per_account(redis_url: str) -> None:
    a, b, c = account(), account(), account()
    async with replica(redis_url, push_max_connections=3, push_max_per_account=2) as svc:
        hub = svc.push
        async with hub.listen(a, None, None), hub.listen(a, None, None):
            with pytest.raises(RequestError) as per_account:
                async with hub.listen(a, None, None):
                    pass
            async with hub.listen(b, None, None):
                with pytest.raises(RequestError) as per_replica:
                    async with hub.listen(c, None, None):
                        pass
                assert hub.listeners == 3
            async with hub.listen(c, None, None):  # a slot was freed
                assert hub.local_accounts() == frozenset({a, c})
        assert hub.listeners == 0 and hub.local_accounts() == frozenset()
    for refused in (per_account.value, per_replica.value):
        problem = describe(refused)
        assert problem.status == 429 and problem.headers["Retry-After"]
        assert problem.request_error("r1")["limit"] == "maxPushConnections"
        assert problem.request_error("r1")["type"] == "urn:ietf:params:jmap:error:limit"


async def test_drain_closes_every_listener_and_refuses_new_ones(redis_url: str) -> None:
    acc = account()
    async with replica(redis_url) as svc:
        async with svc.push.listen(acc, None, None) as one, svc.push.listen(acc, None, None) as two:
            waiting = asyncio.create_task(one.next(None))
            await asyncio.sleep(0)
            svc.push.drain()
            assert svc.push.draining
            with pytest.raises(Closed) as closed:
                await asyncio.wait_for(waiting, WAIT)
            assert closed.value.reason is CloseReason.SHUTDOWN
            assert two.closed is CloseReason.SHUTDOWN
        with pytest.raises(HttpProblem) as refused:
            async with svc.push.listen(acc, None, None):
                pass
        assert describe(refused.value).status == 503


async def test_credentials_failed_closes_only_those_credentials(redis_url: str) -> None:
    acc = account()
    # Two connections of ann's (two client ports: two Principals, the same credentials).
    ann, ann_again = principal(acc, "ann", 50001), principal(acc, "ann", 50002)
    bob = principal(acc, "bob", 50003)
    async with (
        replica(redis_url) as svc,
        svc.push.listen(acc, ann, None) as ann1,
        svc.push.listen(acc, ann_again, None) as ann2,
        svc.push.listen(acc, bob, None) as bob1,
        svc.push.listen(acc, None, None) as token,
    ):
        # The same user name and secret from another client port: the same credentials.
        svc.push.credentials_failed(acc, ann)
        assert ann1.closed is ann2.closed is CloseReason.UNAUTHORIZED
        assert bob1.closed is None and token.closed is None
        with pytest.raises(Closed):
            await ann1.next(0)


async def test_the_watch_demand_hears_listeners_and_releases(redis_url: str) -> None:
    acc, other = account(), account()
    who = principal(acc, "ann")
    demand = RecordingDemand()
    async with replica(redis_url) as svc:
        svc.push.demand = demand
        async with svc.push.listen(acc, who, None), svc.push.listen(acc, None, None) as token:
            client = redis.asyncio.Redis.from_url(redis_url)
            try:
                bus = PushBus(client, "elsewhere")
                assert await bus.publish_released(other)  # nobody listens here: not told
                assert await bus.publish_released(acc)
                # The release of ``acc`` arrives after that of ``other`` (one connection).
                async with asyncio.timeout(WAIT):
                    while ("released", acc, None) not in demand.calls:
                        await asyncio.sleep(0.02)
                # A release is no state change: listeners hear nothing.
                assert await token.next(0.2) is None
            finally:
                await client.aclose()
    assert demand.calls == [
        ("attach", acc, who),
        ("attach", acc, None),
        ("released", acc, None),
        ("detach", acc, None),
        ("detach", acc, who),
    ]


async def test_a_killed_pubsub_connection_is_resubscribed_and_resynced(redis_url: str) -> None:
    acc = account()
    async with replica(redis_url) as svc, svc.push.listen(acc, None, None) as sub:
        resyncs = svc.metrics.push_resyncs._value.get()
        admin = redis.asyncio.Redis.from_url(redis_url)
        try:
            # A change no one announces (as if its message were lost while disconnected).
            missed = await svc.store.account(acc).record("Thread", created=["t1"])
            assert await sub.next(0.3) is None
            assert await admin.execute_command("CLIENT KILL TYPE pubsub") >= 1
            # The resync tells the listener of what it missed ...
            await until_changed(sub, "Thread", str(missed))
            assert svc.metrics.push_resyncs._value.get() > resyncs
            # ... and the next change is heard on the new connection.
            state = await commit_here(svc, acc, "Email", "e1")
            await until_changed(sub, "Email", state)
        finally:
            await admin.aclose()


@pytest.fixture
def restartable_redis() -> Iterator[RedisServer]:
    yield from serving(RedisServer(make_data_dir("jg-redis-")))


async def test_a_redis_restart_during_a_subscription(restartable_redis: RedisServer) -> None:
    url = restartable_redis.url
    acc = account()
    async with replica(url) as svc, svc.push.listen(acc, None, None) as sub:
        before = sub.known()["Email"]
        resyncs = svc.metrics.push_resyncs._value.get()
        restartable_redis.stop()
        await asyncio.sleep(1)
        restartable_redis.start()  # same port, no data: a new epoch
        async with asyncio.timeout(60):
            while svc.metrics.push_resyncs._value.get() == resyncs:
                await asyncio.sleep(0.1)
        state = await commit_here(svc, acc, "Email", "e1")
        await until_changed(sub, "Email", state)
        assert state != before


async def test_the_outbox_is_bounded_and_the_writer_never_waits(redis_url: str) -> None:
    """Commits in a burst the publisher cannot follow (here: no await between them, as in
    one writer's call stack): the oldest accounts' states are dropped and counted, the
    newest are announced."""
    accounts = [account() for _ in range(MAX_OUTBOX + 5)]
    async with replica(redis_url) as svc, svc.push.listen(accounts[-1], None, None) as last:
        failures = svc.metrics.push_publish_failures._value.get()
        journals = []
        async with svc.store.client.pipeline(transaction=True) as pipe:
            for acc in accounts:
                journal = Journal(svc.store.account(acc))
                await journal.log(pipe, "Email", created=["e1"])
                journals.append(journal)
            await pipe.reset()  # never sent: the replies below stand in for EXEC's
        for journal in journals:
            journal.committed([[b"fedcba9876", 1]])
        assert svc.metrics.push_publish_failures._value.get() == failures + 5
        assert await last.next(WAIT) == {accounts[-1]: {"Email": "fedcba9876-1"}}


async def test_a_connection_gone_silent_is_noticed_and_resynced(
    restartable_redis: RedisServer,
) -> None:
    """Redis neither answers nor closes (a half-open socket): the bus's PING goes unanswered,
    it opens a new connection and resyncs, so a change announced into the void is heard."""
    acc = account()
    async with (
        Blackhole(restartable_redis.port) as relay,
        replica(relay.url()) as svc,
        svc.push.listen(acc, None, None) as sub,
    ):
        resyncs = svc.metrics.push_resyncs._value.get()
        assert relay.mute() >= 2  # the pub/sub connection and the commands' one
        # Published straight to Redis by another replica, lost on the silent connection.
        state = await commit_elsewhere(restartable_redis.url, acc, "Email", "e1")
        async with asyncio.timeout(60):
            while True:
                changed = await sub.next(60)
                if changed and changed[acc].get("Email") == state:
                    break
        assert svc.metrics.push_resyncs._value.get() > resyncs
