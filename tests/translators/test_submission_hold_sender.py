"""The delayed sender against a real Redis and a real SMTP sink: held submissions are sent once,
byte-exact, when due; what the server said goes into the record; a transient refusal is tried
again up to the bound; a claim taken over after its "." mark is never sent again; a lease lost
before the "." abandons the transaction; canceled and half-created entries are cleaned up and
never sent; a destroyed record does not stop the send; a stopping sender gives its claim back.

Counts are taken at the sink; nothing measures time (leases and delays are fractions of a
second given through constructors, and the tests wait for states).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest

from gateway.cache.account import AccountIndex
from gateway.cache.held import HeldMessage
from gateway.cache.schedule import Schedule
from gateway.cache.store import Store
from gateway.cache.submissions import SubmissionRecord
from gateway.smtp.connection import Authorization
from gateway.smtp.envelope import Envelope, Recipient
from gateway.smtp.sender import SmtpEndpoint, SmtpSender
from gateway.translators.submission.delayed import DelayedSender, envelope_data
from gateway.translators.submission.deliver import REPLY_LOST
from tests.conftest import serving
from tests.servers import make_data_dir
from tests.smtp_servers import Sink
from tests.translators.submitting import held_usage

MESSAGE = (
    b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: later\r\n"
    b"Message-ID: <held@example.com>\r\n\r\nSent when due.\r\n.leading dot\r\n\xc3\xa9\r\n"
)
SENDER = "alice@example.com"


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A sink of this test's own: what arrived is counted per test."""
    yield from serving(Sink(make_data_dir("jg-sink-"), slow_seconds=1.0))


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(redis_url)
    yield store
    await store.close()


@dataclass
class Rig:
    """One replica's delayed sender, and what a test needs to hold submissions for it."""

    store: Store
    schedule: Schedule
    sender: DelayedSender
    smtp: SmtpSender
    account: str
    schedule_name: str
    # What each send came to, in order, as the sender reports it to the metrics.
    outcomes: list[str]

    def index(self) -> AccountIndex:
        return AccountIndex.of(self.store.client, self.account)

    async def hold(self, recipients: list[str], *, confirm: bool = True) -> str:
        """A pending submission due now, held as hold.py holds one."""
        index = self.index()
        submission_id = await index.submissions.new_id()
        envelope = Envelope(SENDER, {}, tuple(Recipient(r) for r in recipients))
        await self.schedule.add(self.account, submission_id, "alice")
        await index.held.keep(submission_id, HeldMessage(envelope_data(envelope), MESSAGE))
        await index.submissions.create(record(submission_id, recipients))
        if confirm:
            seconds, micros = await self.store.client.time()
            await self.schedule.release_at(
                self.account, submission_id, int(seconds) * 1000 + int(micros) // 1000
            )
        return submission_id

    async def claimed(self, submission_id: str) -> None:
        """Wait until some replica holds the entry (cache.schedule's entries: token set)."""
        entries = f"jg:{{{self.schedule_name}}}:entries"
        for _ in range(400):
            raw = await self.store.client.hget(entries, f"{self.account}/{submission_id}")
            if raw is not None and json.loads(raw)["t"]:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"submission {submission_id} was never claimed")

    async def entries(self) -> int:
        """The schedule's entries, every state, read from Redis itself."""
        return int(await self.store.client.hlen(f"jg:{{{self.schedule_name}}}:entries"))

    async def held_usage(self) -> tuple[int, int]:
        return await held_usage(self.store.client, self.account)

    async def record(self, submission_id: str) -> SubmissionRecord | None:
        return (await self.index().submissions.get([submission_id])).get(submission_id)

    async def settled(self, submission_id: str) -> SubmissionRecord:
        """The record once it is no longer pending and its schedule entry is gone."""
        for _ in range(400):
            found = await self.record(submission_id)
            settled = found is not None and found.undo_status != "pending"
            if settled and found and await self.entries() == 0:
                return found
            await asyncio.sleep(0.02)
        raise AssertionError(f"submission {submission_id} never settled")


def record(submission_id: str, recipients: list[str]) -> SubmissionRecord:
    return SubmissionRecord(
        id=submission_id,
        identity_id="i1",
        email_id="e1",
        thread_id="t1",
        envelope={
            "mailFrom": {"email": SENDER, "parameters": None},
            "rcptTo": [{"email": r, "parameters": None} for r in recipients],
        },
        send_at="2026-12-07T10:00:00Z",
        undo_status="pending",
        delivery_status=None,
    )


RigMaker = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(store: Store, sink: Sink) -> AsyncIterator[RigMaker]:
    """Replicas sharing one schedule (their own, so other tests' entries are not theirs)."""
    name = f"t-{secrets.token_hex(4)}"
    account = f"acct-{secrets.token_hex(4)}"
    rigs: list[Rig] = []

    async def make(
        *,
        lease: float = 5.0,
        backoff: tuple[float, ...] = (0.05,),
        stop_seconds: float = 5.0,
        start: bool = True,
        concurrency: int = 4,
    ) -> Rig:
        schedule = Schedule(
            store.client, name=name, lease_seconds=lease, sweep_seconds=0.1, tentative_seconds=0.2
        )
        outcomes: list[str] = []
        smtp = SmtpSender(SmtpEndpoint("127.0.0.1", sink.port))
        sender = DelayedSender(
            schedule,
            smtp,
            lambda username: Authorization.none(),
            lambda account_id: AccountIndex.of(store.client, account_id),
            backoff=backoff,
            poll_seconds=0.05,
            stop_seconds=stop_seconds,
            concurrency=concurrency,
            on_outcome=outcomes.append,
        )
        rig = Rig(store, schedule, sender, smtp, account, name, outcomes)
        rigs.append(rig)
        if start:
            sender.start()
        return rig

    yield make
    for rig in rigs:
        await rig.sender.stop()
        await rig.smtp.close()


async def test_a_due_submission_is_sent_once_as_held_and_recorded(
    make_rig: RigMaker, sink: Sink
) -> None:
    rigs = [await make_rig() for _ in range(3)]  # three replicas, one send
    submission_id = await rigs[0].hold(["bob@example.com", "reject-carol@example.com"])
    done = await rigs[0].settled(submission_id)
    assert done.undo_status == "final" and done.finished_at is not None
    assert done.delivery_status is not None
    bob, carol = (
        done.delivery_status["bob@example.com"],
        done.delivery_status["reject-carol@example.com"],
    )
    assert (bob.delivered, bob.smtp_reply) == ("queued", "250 2.1.5 Ok")
    assert carol.delivered == "no"
    assert carol.smtp_reply.startswith("550 5.1.1 <reject-carol@example.com>: Recipient address")
    (received,) = list(sink.received)
    assert received.content == MESSAGE  # byte-exact, dot-stuffing undone by the server
    assert received.recipients == ("bob@example.com",)
    assert await rigs[0].index().held.read(submission_id) is None
    assert await rigs[0].held_usage() == (0, 0)
    assert sum(rig.sender.counts.get("sent", 0) for rig in rigs) == 1


async def test_a_transient_refusal_is_tried_again_up_to_the_bound_then_final(
    make_rig: RigMaker, sink: Sink
) -> None:
    rig = await make_rig(backoff=(0.05, 0.05))
    submission_id = await rig.hold(["tempfail-bob@example.com"])
    done = await rig.settled(submission_id)
    assert done.undo_status == "final"
    assert done.delivery_status is not None
    status = done.delivery_status["tempfail-bob@example.com"]
    assert status.delivered == "no"
    assert status.smtp_reply.startswith("451 4.3.0 <tempfail-bob@example.com>: Recipient address")
    assert rig.sender.counts == {"retry": 2, "refused": 1}
    assert list(sink.received) == []


async def test_a_transient_reply_to_the_dot_is_tried_again_and_sent_once(
    make_rig: RigMaker, sink: Sink
) -> None:
    # The "." mark is set before the dot, but a 451 to it says the server did not take the
    # message: the retry clears the mark, and the next attempt sends it.
    rig = await make_rig(backoff=(0.05,))
    submission_id = await rig.hold(["data-tempfail-once-bob@example.com"])
    done = await rig.settled(submission_id)
    assert done.delivery_status is not None
    status = done.delivery_status["data-tempfail-once-bob@example.com"]
    assert (status.delivered, status.smtp_reply) == ("queued", "250 2.1.5 Ok")
    assert len(sink.to("data-tempfail-once-bob@example.com")) == 1
    assert rig.outcomes == ["retry", "sent"]


async def test_a_claim_taken_over_after_its_dot_mark_is_never_sent_again(
    make_rig: RigMaker, sink: Sink
) -> None:
    dead = await make_rig(lease=0.3, start=False)
    submission_id = await dead.hold(["bob@example.com"])
    claim = await dead.schedule.claim()
    assert claim is not None
    assert await dead.schedule.mark_data(claim)  # then the process died
    alive = await make_rig(lease=0.3)
    done = await alive.settled(submission_id)
    assert done.undo_status == "final" and done.delivery_status is not None
    status = done.delivery_status["bob@example.com"]
    assert (status.delivered, status.smtp_reply) == ("unknown", REPLY_LOST)
    assert list(sink.received) == []
    assert alive.sender.counts == {"unknown": 1}


async def test_a_claim_taken_over_before_its_dot_is_sent_once(
    make_rig: RigMaker, sink: Sink
) -> None:
    dead = await make_rig(lease=0.3, start=False)
    submission_id = await dead.hold(["bob@example.com"])
    assert await dead.schedule.claim() is not None  # claimed; the process died before DATA
    alive = await make_rig(lease=0.3)
    done = await alive.settled(submission_id)
    assert done.delivery_status is not None
    assert done.delivery_status["bob@example.com"].delivered == "queued"
    assert len(list(sink.received)) == 1


async def test_a_lease_lost_before_the_dot_abandons_the_transaction(
    make_rig: RigMaker, sink: Sink, store: Store
) -> None:
    slow = await make_rig(lease=5.0, start=False)
    submission_id = await slow.hold(["slow-bob@example.com"])
    slow.sender.start()
    # Once the sender holds it (the slow RCPT keeps the transaction open), its lease runs
    # out as if its renewals had failed, and another claims it.
    await slow.claimed(submission_id)
    due = f"jg:{{{slow.schedule_name}}}:due"
    await store.client.zadd(due, {f"{slow.account}/{submission_id}": 0})
    thief = await slow.schedule.claim()
    assert thief is not None
    for _ in range(200):
        if slow.sender.counts:
            break
        await asyncio.sleep(0.02)
    # Its "." mark was refused: it dropped the connection before the "." and sent nothing.
    assert slow.sender.counts == {"retry": 1}
    assert list(sink.received) == []
    record_now = await slow.record(submission_id)
    assert record_now is not None and record_now.undo_status == "pending"
    assert await slow.index().held.read(submission_id) is not None  # the new holder's to send
    assert await slow.schedule.finish(thief)


async def test_canceled_and_half_created_entries_are_cleaned_up_never_sent(
    make_rig: RigMaker, sink: Sink
) -> None:
    rig = await make_rig(start=False)
    canceled = await rig.hold(["bob@example.com"])
    assert await rig.schedule.cancel(rig.account, canceled) == "canceled"
    # The canceling process died before updating the record and dropping the octets; and
    # another died creating one (never confirmed, so never answered to its client).
    unconfirmed = await rig.hold(["bob@example.com"], confirm=False)
    rig.sender.start()
    for submission_id in (canceled, unconfirmed):
        done = await rig.settled(submission_id)
        assert done.undo_status == "canceled"
        assert await rig.index().held.read(submission_id) is None
    assert list(sink.received) == []


async def test_a_destroyed_record_does_not_stop_the_send(make_rig: RigMaker, sink: Sink) -> None:
    rig = await make_rig(start=False)
    submission_id = await rig.hold(["bob@example.com"])
    # RFC 8621 7: destroying the record "MUST NOT affect the deliveries it represents".
    assert await rig.index().submissions.destroy([submission_id]) == [submission_id]
    rig.sender.start()
    for _ in range(400):
        if list(sink.received) and await rig.entries() == 0:
            break
        await asyncio.sleep(0.02)
    assert len(list(sink.received)) == 1
    assert await rig.record(submission_id) is None
    assert await rig.held_usage() == (0, 0)


async def test_a_stopping_sender_gives_its_claim_back_for_another_to_send(
    make_rig: RigMaker, sink: Sink
) -> None:
    stopping = await make_rig(stop_seconds=0.05, start=False)
    submission_id = await stopping.hold(["slow-bob@example.com"])
    stopping.sender.start()
    await stopping.claimed(submission_id)
    await stopping.sender.stop()  # SIGTERM mid-send (in the slow RCPT)
    assert list(sink.received) == []
    other = await make_rig()
    done = await other.settled(submission_id)
    assert done.delivery_status is not None
    assert done.delivery_status["slow-bob@example.com"].delivered == "queued"
    assert len(list(sink.received)) == 1


async def test_more_due_than_the_concurrency_are_all_sent_once(
    make_rig: RigMaker, sink: Sink
) -> None:
    rig = await make_rig(start=False, concurrency=2)
    ids = [await rig.hold([f"bob{n}@example.com"]) for n in range(9)]
    rig.sender.start()
    for submission_id in ids:
        done = await rig.settled(submission_id)
        assert done.undo_status == "final"
    assert sorted(r.recipients for r in sink.received) == sorted(
        (f"bob{n}@example.com",) for n in range(9)
    )
    assert rig.sender.counts == {"sent": 9}
