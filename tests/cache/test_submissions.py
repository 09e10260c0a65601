"""The submission store (gateway.cache.submissions) against a real Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from gateway.cache.submissions import (
    EMAIL_SUBMISSION,
    DeliveryStatus,
    SubmissionExists,
    SubmissionRecord,
    SubmissionStore,
)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def record(
    submission_id: str,
    *,
    email_id: str = "M1",
    undo_status: str = "final",
    finished_at: float | None = None,
    envid: str | None = None,
    message_id: str | None = None,
) -> SubmissionRecord:
    return SubmissionRecord(
        id=submission_id,
        identity_id="I1",
        email_id=email_id,
        thread_id="T" + email_id,
        envelope={
            "mailFrom": {"email": "alice@example.com", "parameters": None},
            "rcptTo": [{"email": "bob@example.com", "parameters": {"NOTIFY": "SUCCESS"}}],
        },
        send_at="2026-12-07T10:00:00Z",
        undo_status=undo_status,  # type: ignore[arg-type]
        delivery_status={"bob@example.com": DeliveryStatus("250 2.0.0 Ok: queued", "queued")},
        dsn_blob_ids=("B1",),
        message_id=message_id,
        envid=envid,
        finished_at=finished_at,
    )


async def test_create_get_replace_destroy_round_trip(client: aioredis.Redis) -> None:
    store = SubmissionStore.of(client, "acct")
    first = record(await store.new_id(), finished_at=time.time())
    await store.create(first)
    assert await store.get([first.id, "nope"]) == {first.id: first}
    assert await store.all_ids() == [first.id]
    with pytest.raises(SubmissionExists):
        await store.create(first)
    changed = replace(first, mdn_blob_ids=("B2",))
    assert await store.replace(changed)
    assert (await store.get([first.id]))[first.id] == changed
    assert await store.destroy([first.id, "nope"]) == [first.id]
    assert await store.get([first.id]) == {}
    assert not await store.replace(changed)


async def test_changes_through_the_journal(client: aioredis.Redis) -> None:
    store = SubmissionStore.of(client, "acct")
    start = await store.state()
    a, b = record("Sa"), record("Sb")
    await store.create(a)
    await store.create(b)
    middle = await store.state()
    await store.replace(replace(a, undo_status="canceled"))
    await store.destroy(["Sb"])
    changes = await store.state_log.changes(EMAIL_SUBMISSION, middle, None)
    assert (changes.created, changes.updated, changes.destroyed) == ([], ["Sa"], ["Sb"])
    assert changes.new_state == await store.state()
    from_start = await store.state_log.changes(EMAIL_SUBMISSION, start, None)
    assert (from_start.created, from_start.updated, from_start.destroyed) == (["Sa"], [], [])


async def test_replace_expecting_a_status(client: aioredis.Redis) -> None:
    store = SubmissionStore.of(client, "acct")
    pending = record("Sp", undo_status="pending")
    await store.create(pending)
    canceled = replace(pending, undo_status="canceled", finished_at=time.time())
    assert not await store.replace(canceled, expect="final")
    assert (await store.get(["Sp"]))["Sp"].undo_status == "pending"
    assert await store.replace(canceled, expect="pending")
    assert not await store.replace(replace(pending, undo_status="final"), expect="pending")
    assert (await store.get(["Sp"]))["Sp"] == canceled


async def test_accounts_apart(client: aioredis.Redis) -> None:
    mine, theirs = SubmissionStore.of(client, "one"), SubmissionStore.of(client, "two")
    await mine.create(record("Sx"))
    assert await theirs.get(["Sx"]) == {}
    assert await theirs.destroy(["Sx"]) == []
    assert not await theirs.replace(record("Sx", undo_status="canceled"))
    assert list(await mine.get(["Sx"])) == ["Sx"]


async def test_found_for_a_dsn_by_envid_then_message_id(client: aioredis.Redis) -> None:
    store = SubmissionStore.of(client, "acct")
    sent = record("Sd", envid="Sd", message_id="<abc@example.com>")
    await store.create(sent)
    assert await store.find_for_dsn("sD", None) == sent
    assert await store.find_for_dsn(None, " <abc@example.com>") == sent
    assert await store.find_for_dsn("other", "abc@example.com") == sent
    assert await store.find_for_dsn("other", "<other@example.com>") is None
    await store.destroy(["Sd"])
    assert await store.find_for_dsn("Sd", "<abc@example.com>") is None
    assert await client.hlen(store.keys.submission_refs) == 0
