"""A listener's pending map: newest state per type, whatever arrives and in what order.

States come from the journal's format (``<epoch>-<modseq>``, cache/changes.py).
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pytest

from gateway.push import PUSH_TYPES, CloseReason
from gateway.push.coalesce import Pending
from gateway.push.hub import Closed, Subscription
from gateway.push.states import newer

EPOCH = "0123456789"


def st(modseq: int, epoch: str = EPOCH) -> str:
    return f"{epoch}-{modseq}"


def test_newer_orders_by_modseq_within_an_epoch() -> None:
    assert newer(st(1), st(2))
    assert not newer(st(2), st(1))
    assert not newer(st(2), st(2))
    # Another epoch (Redis lost the data): the client must hear of it.
    assert newer(st(9), st(1, "aaaaaaaaaa"))
    # Not a state of ours: newer when different.
    assert newer("junk", st(1)) and not newer("junk", "junk")


def test_ten_thousand_changes_to_an_unread_listener_keep_one_state_per_type() -> None:
    pending = Pending()
    types = sorted(PUSH_TYPES)
    for modseq in range(1, 10_001):
        pending.merge({types[modseq % len(types)]: st(modseq)}, None)
    waiting = pending.take()
    assert waiting is not None and len(waiting) == len(types)
    # Each type holds its last state: the newest of the modseqs it got.
    assert waiting == {t: st(max(m for m in range(1, 10_001) if types[m % 5] == t)) for t in types}
    assert pending.take() is None


def test_an_older_state_after_a_newer_one_is_ignored() -> None:
    pending = Pending()
    pending.merge({"Email": st(7)}, None)
    pending.merge({"Email": st(5)}, None)
    assert pending.take() == {"Email": st(7)}
    # Delivered 7: an older or equal one later is not news.
    assert not pending.merge({"Email": st(6)}, None)
    assert not pending.merge({"Email": st(7)}, None)
    assert pending.take() is None
    assert pending.merge({"Email": st(8)}, None)
    assert pending.take() == {"Email": st(8)}


def test_primed_states_are_not_delivered_again() -> None:
    pending = Pending()
    pending.merge({"Email": st(3), "Mailbox": st(3)}, None)
    # The client already has Email at 3 (e.g. sent in the initial event), Mailbox at 2.
    pending.prime({"Email": st(3), "Mailbox": st(2)})
    assert pending.take() == {"Mailbox": st(3)}
    assert not pending.merge({"Email": st(3)}, None)
    assert pending.known() == {"Email": st(3), "Mailbox": st(3)}


def test_only_the_listeners_types_are_kept() -> None:
    pending = Pending()
    assert not pending.merge({"Mailbox": st(2)}, frozenset({"Email"}))
    assert pending.merge({"Email": st(2), "Thread": st(2), "Calendar": "x"}, frozenset({"Email"}))
    assert pending.take() == {"Email": st(2)}
    # None: every type push knows, and only those.
    pending.merge({"Thread": st(3), "Calendar": st(3)}, None)
    assert pending.take() == {"Thread": st(3)}


async def test_next_returns_the_coalesced_changes_of_its_account() -> None:
    sub = Subscription("a1", None, frozenset({"Email", "Mailbox"}))
    waiter = asyncio.create_task(sub.next(10))
    await asyncio.sleep(0)
    sub.offer({"Email": st(1)})
    sub.offer({"Email": st(2), "Mailbox": st(2), "Thread": st(2)})
    assert await waiter == {"a1": {"Email": st(2), "Mailbox": st(2)}}
    assert await sub.next(0.01) is None
    sub.set_types(frozenset({"Thread"}))
    sub.offer({"Email": st(3), "Thread": st(3)})
    assert await sub.next(0) == {"a1": {"Thread": st(3)}}


async def test_closing_wakes_the_waiter_and_next_raises() -> None:
    sub = Subscription("a1", None, None)
    waiter = asyncio.create_task(sub.next(None))
    await asyncio.sleep(0)
    sub.close(CloseReason.SHUTDOWN)
    with pytest.raises(Closed) as closed:
        await waiter
    assert closed.value.reason is CloseReason.SHUTDOWN and sub.closed is CloseReason.SHUTDOWN
    sub.close(CloseReason.UNAUTHORIZED)  # the first reason stays
    with pytest.raises(Closed) as again:
        await sub.next(1)
    assert again.value.reason is CloseReason.SHUTDOWN


def test_on_ready_is_called_for_new_changes_and_the_close_and_take_drains() -> None:
    sub = Subscription("a1", None, frozenset({"Email"}))
    sub.prime({"Email": st(2)})
    calls: list[None] = []
    sub.on_ready(lambda: calls.append(None))
    sub.offer({"Email": st(1), "Mailbox": st(5)})  # older, or a type not asked for
    assert calls == [] and sub.take() is None
    sub.offer({"Email": st(3)})
    sub.offer({"Email": st(4)})
    assert len(calls) == 2
    assert sub.take() == {"Email": st(4)}
    assert sub.take() is None
    sub.close(CloseReason.TOKEN_EXPIRED)
    assert len(calls) == 3
    with pytest.raises(Closed) as closed:
        sub.take()
    assert closed.value.reason is CloseReason.TOKEN_EXPIRED
    sub.on_ready(None)
    sub.offer({"Email": st(9)})
    assert len(calls) == 3


async def test_memory_of_ten_thousand_idle_subscriptions() -> None:
    """What the hub keeps per idle listener: the subscription after its priming (what a
    connection holds while nothing happens). The figure goes into the README."""
    known = {t: st(10**6) for t in PUSH_TYPES}
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    subs = []
    for n in range(10_000):
        sub = Subscription(f"a{n}", None, None)
        sub.prime(dict(known))
        subs.append(sub)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(s.size_diff for s in after.compare_to(before, "filename"))
    per_subscription = size / len(subs)
    print(f"\nper idle subscription: {per_subscription:.0f} bytes")
    # The primed map holds five short states; the whole stays well under a kilobyte.
    assert per_subscription < 1024
