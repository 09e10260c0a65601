"""The members gateway.ws_protocol swaps into uvicorn's WebSocket protocol behave as the
asyncio ones uvicorn uses them as (the end-to-end behaviour is tests/test_websocket*.py's)."""

from __future__ import annotations

import asyncio

from gateway.ws_protocol import Flag, Inbox


async def test_inbox_hands_out_items_in_order_and_wakes_its_getter() -> None:
    inbox: Inbox[int] = Inbox()
    assert inbox.empty()
    getter = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not getter.done()
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert await getter == 1
    assert not inbox.empty()
    assert await inbox.get() == 2
    assert inbox.empty()


async def test_a_cancelled_get_leaves_the_item_for_the_next() -> None:
    inbox: Inbox[str] = Inbox()
    getter = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    getter.cancel()
    await asyncio.gather(getter, return_exceptions=True)
    inbox.put_nowait("disconnect")
    assert await asyncio.wait_for(inbox.get(), 10) == "disconnect"


async def test_flag_blocks_writers_while_cleared() -> None:
    flag = Flag(is_set=True)
    await asyncio.wait_for(flag.wait(), 10)
    flag.clear()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters) and not flag.is_set()
    flag.set()
    await asyncio.wait_for(asyncio.gather(*waiters), 10)
    assert flag.is_set()
