"""The delayed sender: one task per process that sends held submissions when they fall due.

It claims due entries from the shared schedule (gateway.cache.schedule), so however many
replicas run, each submission is sent by one of them, and a replica that dies mid-send has its
claim taken over once the lease runs out. It sleeps until the schedule's next entry is due
(or at most :data:`POLL_SECONDS`, to see entries other replicas added; its own process wakes
it at once), never visiting accounts.

A send authenticates with the operator's background authorization for the user name kept in
the entry (a service account acting for the user, or a relay trusting the gateway): the user's
password is never stored. Just before the final "." the entry is marked; a replica that takes
over a marked entry never sends it again (RFC 5321 6.1, RFC 1047: the message may have gone)
and records every recipient ``unknown``. What a send comes to goes into the EmailSubmission
record (RFC 8621 7): accepted -> ``final`` with each recipient's status; refused -> ``final``
with every recipient ``no`` and the reply; a transient failure (4xx, the server down, the
connection lost before the ".") -> tried again after a backoff, up to :data:`BACKOFF`'s
length, then ``final``/``no``. A record the user destroyed meanwhile does not stop the send
(RFC 8621 7), it is just not written.

On stop (SIGTERM) the task claims nothing more, lets the sends in flight finish for up to
:data:`STOP_SECONDS`, and gives back what it could not finish: an entry not yet at its "." is
due again at once for another replica; one past it keeps its mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from gateway.cache.account import AccountIndex
from gateway.cache.held import HeldMessages
from gateway.cache.schedule import Claim, Schedule
from gateway.cache.store import STORE_UNAVAILABLE
from gateway.cache.submissions import Delivered, DeliveryStatus, SubmissionStore
from gateway.smtp.connection import Authorization
from gateway.smtp.envelope import Envelope, Recipient
from gateway.smtp.outcome import SmtpFailure
from gateway.smtp.sender import SmtpSender
from gateway.translators.submission.deliver import REPLY_LOST, delivery_status

log = logging.getLogger(__name__)

# Seconds before each new attempt after a transient failure; its length bounds the attempts.
BACKOFF: tuple[float, ...] = (30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)
# The longest sleep between looks at the schedule (entries added by other replicas).
POLL_SECONDS = 1.0
# Sends one process runs at once.
CONCURRENCY = 4
# How long a stopping process lets its sends finish before giving them back: within the 10 s
# the Helm chart leaves after GATEWAY_SHUTDOWN_TIMEOUT_SECONDS for the LOGOUTs (values.yaml
# terminationGracePeriodSeconds), so the pod is not killed first. A message takes milliseconds
# on a nearby server; one given back before its "." is sent by another replica.
STOP_SECONDS = 5.0

# RFC 8621 7 synthetic smtpReply forms (code, enhanced code, text) for what no server said.
REPLY_NOT_CONFIGURED = (
    "554 5.7.0 Delayed sending is no longer configured on the gateway; the message was not sent"
)
REPLY_LOST_MESSAGE = "554 5.3.0 The held message was lost from the gateway's store; not sent"

# How a background send logs in for a user name, or None when none is possible.
BackgroundAuthorization = Callable[[str], Authorization | None]
# The stores of an account by its id.
IndexOf = Callable[[str], AccountIndex]


def envelope_data(envelope: Envelope) -> dict[str, Any]:
    """An envelope as plain data, to be kept with the held octets."""
    return {
        "from": envelope.mail_from,
        "params": dict(envelope.parameters),
        "rcpt": [[r.address, dict(r.parameters)] for r in envelope.recipients],
    }


def envelope_of(data: Mapping[str, Any]) -> Envelope:
    return Envelope(
        data["from"],
        data["params"],
        tuple(Recipient(address, parameters) for address, parameters in data["rcpt"]),
    )


def _all(recipients: Sequence[str], reply: str, delivered: Delivered) -> dict[str, DeliveryStatus]:
    return {address: DeliveryStatus(reply, delivered) for address in recipients}


def failed_status(failure: SmtpFailure, recipients: Sequence[str]) -> dict[str, DeliveryStatus]:
    """Every recipient ``no``: the one refused at RCPT with its own reply, the others with
    the reply that ended the transaction."""
    said = str(failure.reply) if failure.reply is not None else f"451 4.4.2 {failure}"
    status = _all(recipients, said, "no")
    for address, reply in failure.refused.items():
        status[address] = DeliveryStatus(str(reply), "no")
    return status


class DelayedSender:
    """The process's sender of held submissions (one per process, started with the services)."""

    def __init__(
        self,
        schedule: Schedule,
        smtp: SmtpSender,
        authorize: BackgroundAuthorization,
        index_of: IndexOf,
        *,
        backoff: Sequence[float] = BACKOFF,
        poll_seconds: float = POLL_SECONDS,
        concurrency: int = CONCURRENCY,
        stop_seconds: float = STOP_SECONDS,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self.schedule = schedule
        self._smtp = smtp
        self._authorize = authorize
        self._index_of = index_of
        self._backoff = tuple(backoff)
        self._poll = poll_seconds
        self._concurrency = concurrency
        self._stop_seconds = stop_seconds
        self._on_outcome = on_outcome
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._sends: dict[asyncio.Task[None], Claim] = {}
        # Counted for the metrics and the tests: sends by what they came to.
        self.counts: dict[str, int] = {}

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="delayed-sender")

    def wake(self) -> None:
        """A submission was held or canceled in this process: look at the schedule now."""
        self._wake.set()

    async def stop(self) -> None:
        """Claim nothing more; let the sends in flight finish, give back the rest."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        try:
            while not self._stopping:
                self._wake.clear()  # a wake from here on cuts the sleep below short
                try:
                    await self._claim_due()
                    # At capacity, a finishing send wakes the loop; otherwise the next entry.
                    full = len(self._sends) >= self._concurrency
                    delay = None if full else await self.schedule.next_due()
                except STORE_UNAVAILABLE:
                    log.warning("delayed sender: Redis unavailable; looking again shortly")
                    delay = None
                except Exception:
                    # Whatever went wrong, the task goes on: held mail must not stop for good.
                    log.exception("delayed sender: looking at the schedule failed")
                    delay = None
                await self._sleep(self._poll if delay is None else min(delay, self._poll))
        finally:
            await self._finish_sends()

    async def _claim_due(self) -> None:
        while len(self._sends) < self._concurrency and not self._stopping:
            claim = await self.schedule.claim()
            if claim is None:
                return
            task = asyncio.create_task(self._send_claimed(claim))
            self._sends[task] = claim
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sends.pop(task, None)
        self._wake.set()  # room for another claim
        if not task.cancelled() and task.exception() is not None:
            log.error("delayed sender: a send failed", exc_info=task.exception())

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()

    async def _finish_sends(self) -> None:
        if not self._sends:
            return
        _, late = await asyncio.wait(list(self._sends), timeout=self._stop_seconds)
        claims = [self._sends[task] for task in late if task in self._sends]
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        for claim in claims:
            # Not at its "." yet: due again at once for another replica. Past it, the release
            # fails the token check only if the mark's holder lost it; the mark stays either way.
            with contextlib.suppress(*STORE_UNAVAILABLE):
                await self.schedule.release(claim)

    # -- one submission -----------------------------------------------------------------------

    async def _send_claimed(self, claim: Claim) -> None:
        renewing = asyncio.create_task(self._renew(claim))
        try:
            outcome = await self._handle(claim)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    async def _renew(self, claim: Claim) -> None:
        """Keep the lease while the send runs; a lost lease is seen at the "." mark."""
        while True:
            await asyncio.sleep(self.schedule.lease_seconds / 3)
            with contextlib.suppress(*STORE_UNAVAILABLE):
                if not await self.schedule.renew(claim):
                    return

    async def _handle(self, claim: Claim) -> str:
        held = claim.held
        index = self._index_of(held.account_id)
        store, messages = index.submissions, index.held
        record = (await store.get([held.submission_id])).get(held.submission_id)
        if held.canceled or not held.confirmed:
            # The user canceled it (the cancel's cleanup did not finish), or its creation
            # never completed, so the client was never told of it: it is not sent.
            if record is not None and record.undo_status == "pending":
                await store.replace(
                    replace(record, undo_status="canceled", finished_at=time.time()),
                    expect="pending",
                )
            return await self._end(claim, messages, "canceled")
        if record is not None and record.undo_status != "pending":
            return await self._end(claim, messages, "done")  # an earlier holder finished it
        message = await messages.read(held.submission_id)
        if message is None:
            log.error("submission %s: its held message is missing", held.submission_id)
            await self._record(store, held.submission_id, None, REPLY_LOST_MESSAGE, "no")
            return await self._end(claim, messages, "lost")
        envelope = envelope_of(message.envelope)
        recipients = [r.address for r in envelope.recipients]
        if held.data_started:
            # RFC 5321 6.1, RFC 1047: a holder died after its mark: the message may have gone.
            log.warning(
                "submission %s: taken over after its final '.' may have been sent; recorded "
                "with its delivery unknown, never sent again",
                held.submission_id,
            )
            await self._record(store, held.submission_id, recipients, REPLY_LOST, "unknown")
            return await self._end(claim, messages, "unknown")
        auth = self._authorize(held.username)
        if auth is None:
            await self._record(store, held.submission_id, recipients, REPLY_NOT_CONFIGURED, "no")
            return await self._end(claim, messages, "refused")
        return await self._send(claim, store, messages, auth, envelope, message.octets)

    async def _send(
        self,
        claim: Claim,
        store: SubmissionStore,
        messages: HeldMessages,
        auth: Authorization,
        envelope: Envelope,
        octets: bytes,
    ) -> str:
        held = claim.held
        recipients = [r.address for r in envelope.recipients]

        async def mark() -> None:
            # Before the ".": from here on no replica sends it again.
            if not await self.schedule.mark_data(claim):
                raise RuntimeError("the lease was lost before the final '.'")

        try:
            outcome = await self._smtp.send(auth, envelope, octets, before_final=mark)
        except SmtpFailure as failure:
            if failure.ambiguous:
                await self._record(store, held.submission_id, recipients, REPLY_LOST, "unknown")
                return await self._end(claim, messages, "unknown")
            # Not ambiguous: the server said no (even a 4xx to the "."), or the "." was never
            # written, so the retry clears the mark and the next attempt may send.
            if failure.transient and held.attempts < len(self._backoff):
                delay = self._backoff[held.attempts]
                log.info(
                    "submission %s: %s; trying again in %.0f s", held.submission_id, failure, delay
                )
                await self.schedule.retry(claim, delay)
                return "retry"
            status = failed_status(failure, recipients)
            await self._write(store, held.submission_id, status)
            return await self._end(claim, messages, "refused")
        await self._write(store, held.submission_id, delivery_status(outcome))
        return await self._end(claim, messages, "sent")

    async def _record(
        self,
        store: SubmissionStore,
        submission_id: str,
        recipients: Sequence[str] | None,
        reply: str,
        delivered: Delivered,
    ) -> None:
        if recipients is None:
            record = (await store.get([submission_id])).get(submission_id)
            if record is None:
                return
            recipients = [r["email"] for r in record.envelope.get("rcptTo", [])]
        await self._write(store, submission_id, _all(recipients, reply, delivered))

    async def _write(
        self, store: SubmissionStore, submission_id: str, status: dict[str, DeliveryStatus]
    ) -> None:
        """The submission final with ``status``, if its record is still there and pending."""
        record = (await store.get([submission_id])).get(submission_id)
        if record is None or record.undo_status != "pending":
            return
        final = replace(
            record, undo_status="final", delivery_status=status, finished_at=time.time()
        )
        await store.replace(final, expect="pending")

    async def _end(self, claim: Claim, messages: HeldMessages, outcome: str) -> str:
        await messages.drop(claim.held.submission_id)
        await self.schedule.finish(claim)
        return outcome
