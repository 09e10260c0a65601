"""The submission store (gateway.cache.submissions) against a real Redis."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from gateway.cache import submissions
from gateway.cache.changes import CannotCalculateChanges, parse_state
from gateway.cache.keys import AccountKeys
from gateway.cache.store import Store
from gateway.cache.submissions import (
    EMAIL_SUBMISSION,
    DeliveryStatus,
    SubmissionExists,
    SubmissionRecord,
    SubmissionStore,
    TooManySubmissions,
)
from tests.cache.test_cluster import assert_on_one_node
from tests.rediscluster import RedisClusterSet


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
    finished_at: float | None = 0.0,
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
        # 0.0: the default, finished now if it is finished at all.
        finished_at=(None if undo_status == "pending" else time.time())
        if finished_at == 0.0
        else finished_at,
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


async def test_a_finished_record_without_an_end_is_stamped(client: aioredis.Redis) -> None:
    store = SubmissionStore.of(client, "acct")
    before = time.time()
    await store.create(record("Sf", finished_at=None))
    await store.create(record("Sp", undo_status="pending"))
    stamped = (await store.get(["Sf"]))["Sf"].finished_at
    assert stamped is not None and before <= stamped <= time.time()
    await store.replace(record("Sp", undo_status="canceled", finished_at=None))
    assert (await store.get(["Sp"]))["Sp"].finished_at is not None
    assert sorted(await client.zrange(store.keys.submissions_finished, 0, -1)) == [b"Sf", b"Sp"]


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
    # The same Email sent again: its Message-ID now finds the later submission, and
    # forgetting the earlier one leaves the later one's refs alone.
    again = record("Se", envid="Se", message_id="<abc@example.com>")
    await store.create(again)
    assert await store.find_for_dsn(None, "<abc@example.com>") == again
    assert await store.destroy(["Sd"]) == ["Sd"]
    assert await store.find_for_dsn(None, "<abc@example.com>") == again
    assert await store.find_for_dsn("Sd", None) is None
    # A rewrite without the refs drops them.
    assert await store.replace(replace(again, envid=None, message_id=None))
    assert await store.find_for_dsn("Se", "<abc@example.com>") is None
    await store.create(sent)
    await store.destroy(["Sd", "Se"])
    assert await store.find_for_dsn("Sd", "<abc@example.com>") is None
    assert await client.hlen(store.keys.submission_refs) == 0


async def test_retention_destroys_finished_records_and_logs_it(client: aioredis.Redis) -> None:
    store = SubmissionStore.of(client, "acct", retention=60)
    now = time.time()
    old = record("Sold", finished_at=now - 120)
    fresh = record("Sfresh", finished_at=now)
    pending = record("Spending", undo_status="pending")
    # A pending record whose finished_at is somehow set is still never expired.
    odd = record("Sodd", undo_status="pending", finished_at=now - 120)
    keeper = SubmissionStore.of(client, "acct")  # no retention: writes expire nothing
    for each in (old, fresh, pending, odd):
        await keeper.create(each)
    before = await keeper.state()
    assert sorted(await keeper.all_ids()) == ["Sfresh", "Sodd", "Sold", "Spending"]
    assert sorted(await store.all_ids()) == ["Sfresh", "Sodd", "Spending"]
    changes = await store.state_log.changes(EMAIL_SUBMISSION, before, None)
    assert (changes.created, changes.updated, changes.destroyed) == ([], [], ["Sold"])
    assert await client.zrange(store.keys.submissions_finished, 0, -1) == [b"Sfresh"]
    assert await store.expire() == []


async def test_a_write_expires_too(client: aioredis.Redis) -> None:
    store = SubmissionStore.of(client, "acct", retention=60)
    await SubmissionStore.of(client, "acct").create(record("Sold", finished_at=time.time() - 61))
    before = await SubmissionStore.of(client, "acct").state()
    await store.create(record("Snew"))
    changes = await store.state_log.changes(EMAIL_SUBMISSION, before, None)
    assert (changes.created, changes.destroyed) == (["Snew"], ["Sold"])
    assert await client.hkeys(store.keys.submissions) == [b"Snew"]


async def test_the_bound_destroys_the_oldest_finished_first(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(submissions, "MAX_SUBMISSIONS", 4)
    store = SubmissionStore.of(client, "acct")
    now = time.time()
    await store.create(record("Sp1", undo_status="pending"))
    await store.create(record("Sf2", finished_at=now - 10))
    await store.create(record("Sf1", finished_at=now - 20))
    await store.create(record("Sp2", undo_status="pending"))
    before = await store.state()
    await store.create(record("Sn1", undo_status="pending"))
    assert sorted(await store.all_ids()) == ["Sf2", "Sn1", "Sp1", "Sp2"]
    await store.create(record("Sn2", undo_status="pending"))
    assert sorted(await store.all_ids()) == ["Sn1", "Sn2", "Sp1", "Sp2"]
    with pytest.raises(TooManySubmissions):
        await store.create(record("Sn3", undo_status="pending"))
    assert sorted(await store.all_ids()) == ["Sn1", "Sn2", "Sp1", "Sp2"]
    changes = await store.state_log.changes(EMAIL_SUBMISSION, before, None)
    # The oldest finished went first, logged destroyed; pending ones were never evicted.
    assert (changes.created, changes.updated, changes.destroyed) == (
        ["Sn1", "Sn2"],
        [],
        ["Sf1", "Sf2"],
    )
    # Canceling one makes room again.
    assert await store.replace(
        replace(record("Sp1", undo_status="canceled"), finished_at=now), expect="pending"
    )
    await store.create(record("Sn3", undo_status="pending"))
    assert sorted(await store.all_ids()) == ["Sn1", "Sn2", "Sn3", "Sp2"]


async def test_concurrent_replaces_one_wins(redis_url: str) -> None:
    """A cancel and the delayed sender's claim, each on its own connection, race on
    ``expect="pending"``: for every submission exactly one of them changes it."""
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        stores = [SubmissionStore.of(c, "acct") for c in clients]
        ids = [f"Srace{i}" for i in range(40)]
        for each in ids:
            await stores[0].create(record(each, undo_status="pending"))
        now = time.time()
        for each in ids:
            canceled = record(each, undo_status="canceled", finished_at=now)
            sent = record(each, undo_status="final", finished_at=now, envid=each)
            won = await asyncio.gather(
                stores[0].replace(canceled, expect="pending"),
                stores[1].replace(sent, expect="pending"),
            )
            assert sorted(won) == [False, True]
            stored = (await stores[0].get([each]))[each]
            assert stored == (canceled if won[0] else sent)
    finally:
        for c in clients:
            await c.aclose()


async def test_writes_racing_on_one_account_all_land(redis_url: str) -> None:
    """Creates, replaces and destroys from several connections at once: every write is kept
    and logged once (the transactions retry when another came between)."""
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(4)]
    try:
        stores = [SubmissionStore.of(c, "acct") for c in clients]
        start = await stores[0].state()
        await asyncio.gather(
            *(stores[i % 4].create(record(f"Sc{i}", undo_status="pending")) for i in range(40))
        )
        done = await asyncio.gather(
            *(
                stores[i % 4].replace(record(f"Sc{i}", undo_status="canceled"), expect="pending")
                for i in range(0, 40, 2)
            ),
            *(stores[i % 4].destroy([f"Sc{i}"]) for i in range(1, 40, 2)),
        )
        assert done[:20] == [True] * 20
        assert done[20:] == [[f"Sc{i}"] for i in range(1, 40, 2)]
        kept = await stores[0].get([f"Sc{i}" for i in range(40)])
        assert sorted(kept) == sorted(f"Sc{i}" for i in range(0, 40, 2))
        assert {r.undo_status for r in kept.values()} == {"canceled"}
        _, modseq = parse_state(await stores[0].state())
        assert modseq - parse_state(start)[1] == 80  # 40 created, 20 updated, 20 destroyed
    finally:
        for c in clients:
            await c.aclose()


async def test_on_a_redis_cluster(redis_cluster: RedisClusterSet) -> None:
    """The transactions WATCH and write the account's keys alone: one slot, one node."""
    cluster = Store.from_url(redis_cluster.url)
    other = Store.from_url(redis_cluster.url)
    account = "submissions-" + secrets.token_hex(4)  # the cluster is shared, never emptied
    try:
        store = SubmissionStore.of(cluster.client, account, retention=60)
        rival = SubmissionStore.of(other.client, account)
        now = time.time()
        await rival.create(record("Sold", finished_at=now - 120, envid="Sold"))
        await store.create(record("Sp", undo_status="pending", message_id="<m@x>"))
        won = await asyncio.gather(
            store.replace(
                record("Sp", undo_status="canceled", finished_at=now, message_id="<m@x>"),
                expect="pending",
            ),
            rival.replace(record("Sp", finished_at=now, message_id="<m@x>"), expect="pending"),
        )
        assert sorted(won) == [False, True]
        assert await store.all_ids() == ["Sp"]
        assert (await store.find_for_dsn(None, "m@x")) == (await store.get(["Sp"]))["Sp"]
        assert await rival.find_for_dsn("sold", None) is None
        keys = assert_on_one_node(redis_cluster, account)
        assert AccountKeys(account).submissions in keys
        assert await store.destroy(["Sp"]) == ["Sp"]
        assert await store.all_ids() == []
    finally:
        await cluster.close()
        await other.close()


async def test_concurrent_updates_all_land(redis_url: str) -> None:
    """Read-modify-write from two connections at once (two delivery reports of one
    submission): neither change is lost."""
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        stores = [SubmissionStore.of(c, "acct") for c in clients]
        await stores[0].create(replace(record("Su"), dsn_blob_ids=()))

        def adding(blob_id: str) -> Callable[[SubmissionRecord], SubmissionRecord | None]:
            def change(current: SubmissionRecord) -> SubmissionRecord | None:
                if blob_id in current.dsn_blob_ids:
                    return None
                return replace(current, dsn_blob_ids=(*current.dsn_blob_ids, blob_id))

            return change

        blobs = [f"B{i}" for i in range(20)]
        written = await asyncio.gather(
            *(stores[i % 2].update("Su", adding(blob)) for i, blob in enumerate(blobs))
        )
        assert all(w is not None for w in written)
        stored = (await stores[0].get(["Su"]))["Su"]
        assert sorted(stored.dsn_blob_ids) == sorted(blobs)
        assert await stores[0].update("Su", adding("B3")) is None  # declined: nothing written
        assert await stores[0].update("Snone", adding("B3")) is None
        assert (await stores[0].get(["Su"]))["Su"] == stored
    finally:
        for c in clients:
            await c.aclose()


async def test_the_change_log_forgets_old_destructions(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_TOMBSTONES destroyed ids the oldest leave the log; a state from before them
    cannot be calculated from any more, later ones still can."""
    monkeypatch.setattr(submissions, "MAX_TOMBSTONES", 5)
    monkeypatch.setattr(submissions, "PRUNE_BATCH", 2)
    store = SubmissionStore.of(client, "acct")
    for i in range(10):
        await store.create(record(f"S{i}"))
    states = [await store.state()]
    for i in range(6):
        assert await store.destroy([f"S{i}"]) == [f"S{i}"]
        states.append(await store.state())
    # The sixth destruction made six: the three oldest went.
    for old in states[:3]:
        with pytest.raises(CannotCalculateChanges):
            await store.state_log.changes(EMAIL_SUBMISSION, old, None)
    kept = await store.state_log.changes(EMAIL_SUBMISSION, states[3], None)
    assert (kept.created, kept.updated, kept.destroyed) == ([], [], ["S3", "S4", "S5"])
    keys = store.state_log.keys
    assert await client.zcard(keys.dead(EMAIL_SUBMISSION)) == 3
    assert await client.zcard(keys.changed(EMAIL_SUBMISSION)) == 7
    assert await client.zcard(keys.born(EMAIL_SUBMISSION)) == 7
    assert sorted(await store.all_ids()) == [f"S{i}" for i in range(6, 10)]
