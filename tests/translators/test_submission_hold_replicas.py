"""Delayed send across real gateway processes on one Redis: a held submission survives every
replica being restarted and is sent once; two replicas never both send one; a replica killed
(SIGKILL) while it holds a send has it taken over once its lease runs out: sent once if its
"." never went out, never again if it may have.

Gateways run as ``python -m gateway serve`` (tests/test_shutdown.py); the killed replica runs
the same DelayedSender in a process of its own with a short lease
(tests/translators/hold_replica.py). Counts are taken at the SMTP sink.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from gateway.cache.store import Store
from tests.conftest import serving
from tests.jmapclient import Jmap
from tests.servers import Dovecot, make_data_dir
from tests.smtp_servers import Sink
from tests.test_shutdown import Gateway, gateway_process
from tests.translators.submitting import DOMAIN, settled, submit_later

SLOW_SECONDS = 4.0


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A sink of this test's own: what arrived is counted per test."""
    yield from serving(Sink(make_data_dir("jg-sink-"), slow_seconds=SLOW_SECONDS))


@asynccontextmanager
async def replica(
    dovecot: Dovecot, redis_url: str, sink: Sink, tmp_path: Path, name: str
) -> AsyncIterator[Gateway]:
    place = tmp_path / name
    place.mkdir()
    async with gateway_process(
        dovecot.url, redis_url, place, smtp_url=sink.url, smtp_auth="none", mail_domain=DOMAIN
    ) as gateway:
        yield gateway


@asynccontextmanager
async def user_at(gateway: Gateway, dovecot: Dovecot, name: str) -> AsyncIterator[Jmap]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        yield await Jmap(http, name, dovecot.users[name]).start()


async def stop(gateway: Gateway) -> None:
    gateway.process.send_signal(signal.SIGTERM)
    assert await gateway.exits_gracefully()


def subject_counts(sink: Sink) -> dict[str, int]:
    counts: dict[str, int] = {}
    for received in list(sink.received):
        line = next(h for h in received.content.split(b"\r\n") if h.lower().startswith(b"subject:"))
        subject = line.split(b":", 1)[1].strip().decode()
        counts[subject] = counts.get(subject, 0) + 1
    return counts


async def test_a_held_submission_is_sent_once_after_every_replica_restarted(
    dovecot: Dovecot, redis_url: str, sink: Sink, tmp_path: Path
) -> None:
    name = dovecot.fresh_user()
    async with replica(dovecot, redis_url, sink, tmp_path, "a") as first:
        async with user_at(first, dovecot, name) as user:
            response = await submit_later(user, "survivor", {"HOLDFOR": "5"})
            submission_id = response[1]["created"]["s"]["id"]
        await stop(first)
    assert list(sink.received) == []
    async with (
        replica(dovecot, redis_url, sink, tmp_path, "b") as second,
        replica(dovecot, redis_url, sink, tmp_path, "c"),
    ):
        async with user_at(second, dovecot, name) as user:
            done = await settled(user, submission_id, tries=2000)
        assert done["deliveryStatus"]["bob@example.org"]["delivered"] == "queued"
        await asyncio.sleep(0.5)
    assert subject_counts(sink) == {"survivor": 1}


async def test_two_replicas_never_both_send_one(
    dovecot: Dovecot, redis_url: str, sink: Sink, tmp_path: Path
) -> None:
    name = dovecot.fresh_user()
    subjects = [f"many {n}" for n in range(10)]
    async with (
        replica(dovecot, redis_url, sink, tmp_path, "a") as first,
        replica(dovecot, redis_url, sink, tmp_path, "b") as second,
        user_at(first, dovecot, name) as at_first,
        user_at(second, dovecot, name) as at_second,
    ):
        ids = []
        for n, subject in enumerate(subjects):
            user = (at_first, at_second)[n % 2]
            response = await submit_later(user, subject, {"HOLDFOR": "2"})
            ids.append(response[1]["created"]["s"]["id"])
        for submission_id in ids:
            await settled(at_first, submission_id, tries=2000)
        await asyncio.sleep(0.5)
    assert subject_counts(sink) == {subject: 1 for subject in subjects}


@asynccontextmanager
async def killable_replica(redis_url: str, sink: Sink) -> AsyncIterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.translators.hold_replica", redis_url, str(sink.port), "1.0"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        assert line.strip() == b"ready"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


async def held_by_someone(redis_url: str, member: str) -> bool:
    store = Store.from_url(redis_url)
    try:
        raw = await store.client.hget("jg:{schedule}:entries", member)
        return raw is not None and bool(json.loads(raw)["t"])
    finally:
        await store.close()


async def until(condition: object, tries: int = 1000) -> None:
    for _ in range(tries):
        if await condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


@pytest.mark.parametrize(
    ("recipient", "delivered", "arrived"),
    [
        # Killed in the slow RCPT, before the ".": the new holder sends it, once.
        ("slow-bob@example.org", "queued", 1),
        # Killed waiting for the reply to the ".": it may have gone; it is never sent again.
        ("stall-after-dot-bob@example.org", "unknown", 1),
    ],
)
async def test_a_send_whose_replica_was_killed_is_taken_over_once(
    dovecot: Dovecot,
    redis_url: str,
    sink: Sink,
    tmp_path: Path,
    recipient: str,
    delivered: str,
    arrived: int,
) -> None:
    name = dovecot.fresh_user()
    async with replica(dovecot, redis_url, sink, tmp_path, "a") as first:
        async with user_at(first, dovecot, name) as user:
            response = await submit_later(user, "killed", {"HOLDFOR": "4"}, to=recipient)
            submission_id = response[1]["created"]["s"]["id"]
            account_id = user.account_id
        await stop(first)  # only the killable replica is left to claim it
    async with killable_replica(redis_url, sink) as doomed:
        member = f"{account_id}/{submission_id}"
        await until(lambda: held_by_someone(redis_url, member))
        if recipient.startswith("stall-after-dot-"):
            await until(lambda: asyncio.sleep(0, bool(sink.to(recipient))))
        else:
            await until(lambda: asyncio.sleep(0, sink.slowed > 0))
        doomed.send_signal(signal.SIGKILL)
    async with replica(dovecot, redis_url, sink, tmp_path, "b") as second:
        async with user_at(second, dovecot, name) as user:
            done = await settled(user, submission_id, tries=3000)
        assert done["undoStatus"] == "final"
        assert done["deliveryStatus"][recipient]["delivered"] == delivered
        await asyncio.sleep(0.5)
    assert len(list(sink.received)) == arrived
