"""A gateway offering the submission capability, clients using it, and records put straight
into its store (the read methods' tests need no SMTP server: sending is another part's)."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from gateway.cache.submissions import DeliveryStatus, SubmissionRecord, SubmissionStore
from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import Jmap
from tests.servers import Dovecot, refused_port
from tests.translators.submitting import request

# The retention the test gateway runs with: records finished longer ago are gone.
RETENTION = 60


class Sender:
    """One user's JMAP client with the submission capability, and their account's store."""

    def __init__(self, jmap: Jmap, store: SubmissionStore) -> None:
        self.jmap = jmap
        self.store = store

    async def request(self, *calls: tuple[str, dict[str, Any]]) -> list[list[Any]]:
        return await request(self.jmap, *calls)

    async def call(self, name: str, **args: Any) -> dict[str, Any]:
        """One call; fails the test if it returned an error."""
        (response,) = await self.request((name, args))
        assert response[0] == name, response
        return response[1]  # type: ignore[no-any-return]

    async def error(self, name: str, **args: Any) -> dict[str, Any]:
        """One call that must fail: its error object."""
        (response,) = await self.request((name, args))
        assert response[0] == "error", response
        return response[1]  # type: ignore[no-any-return]


@pytest.fixture
async def submission_gateway(dovecot: Dovecot, redis_url: str) -> AsyncIterator[str]:
    """A gateway that offers sending (an SMTP URL nobody answers: these tests never send)."""
    with refused_port() as port:
        settings = gateway_settings(
            dovecot.url,
            redis_url,
            smtp_url=f"smtp://127.0.0.1:{port}",
            submission_retention_seconds=RETENTION,
        )
        async with running_gateway(settings) as url:
            yield url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def submission_http(submission_gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=submission_gateway, timeout=30) as client:
        yield client


async def new_sender(dovecot: Dovecot, http: httpx.AsyncClient, client: aioredis.Redis) -> Sender:
    user = dovecot.fresh_user()
    jmap = await Jmap(http, user, dovecot.users[user]).start()
    return Sender(jmap, SubmissionStore.of(client, jmap.account_id))


@pytest.fixture
async def sender(
    dovecot: Dovecot, submission_http: httpx.AsyncClient, redis_client: aioredis.Redis
) -> Sender:
    return await new_sender(dovecot, submission_http, redis_client)


BASE = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def submission(
    submission_id: str,
    *,
    identity_id: str = "I1",
    email_id: str = "Ma",
    thread_id: str = "Ta",
    send_at: datetime = BASE,
    undo_status: str = "final",
    finished_at: float | None = None,
) -> SubmissionRecord:
    done = undo_status != "pending"
    return SubmissionRecord(
        id=submission_id,
        identity_id=identity_id,
        email_id=email_id,
        thread_id=thread_id,
        envelope={
            "mailFrom": {"email": "alice@example.com", "parameters": {"ENVID": submission_id}},
            "rcptTo": [
                {"email": "bob@example.com", "parameters": None},
                {"email": "carol@example.com", "parameters": {"NOTIFY": "FAILURE"}},
            ],
        },
        send_at=utc(send_at),
        undo_status=undo_status,  # type: ignore[arg-type]
        delivery_status=None
        if undo_status == "pending"
        else {
            "bob@example.com": DeliveryStatus("250 2.0.0 Ok: queued as 4Xyz", "queued"),
            "carol@example.com": DeliveryStatus(
                "550 5.1.1 <carol@example.com>: Recipient address rejected", "no"
            ),
        },
        dsn_blob_ids=("Gdsn1",) if done else (),
        envid=submission_id,
        finished_at=(time.time() if done else None) if finished_at is None else finished_at,
    )


def assorted(count: int, seed: int) -> list[SubmissionRecord]:
    """Submissions with every property a filter or sort reads spread over few values, so
    conditions match some and sorts meet ties."""
    pick = random.Random(seed)
    return [
        submission(
            f"S{i:03d}",
            identity_id=pick.choice(["I1", "I2", "I3"]),
            email_id=pick.choice(["Ma", "Mb", "Mc", "Md"]),
            thread_id=pick.choice(["Ta", "Tb", "Tc"]),
            send_at=BASE + timedelta(minutes=pick.randrange(6)),
            undo_status=pick.choice(["pending", "final", "canceled"]),
        )
        for i in range(count)
    ]
