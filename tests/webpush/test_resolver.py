"""The push lookups' own threads (resolver.py): a few per process, a share per account, refused
at once when taken, and a thread counted busy until its system call returns, not until its
caller stops waiting. DNS is stubbed (outbound, like HTTP): the calls block until released."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.webpush import resolver
from gateway.webpush.resolver import Resolver, ResolverBusy
from tests.push.webpush_gateway import eventually


class Blocking:
    def __init__(self) -> None:
        self.released = threading.Event()
        self.calls: list[str] = []

    def __call__(self, host: str, port: int, **_: Any) -> list[Any]:
        self.calls.append(host)
        self.released.wait(30)
        return [(2, 1, 6, "", ("192.0.2.1", port))]


@pytest.fixture
def blocking(monkeypatch: pytest.MonkeyPatch) -> Iterator[Blocking]:
    stub = Blocking()
    monkeypatch.setattr(resolver, "system_getaddrinfo", stub)
    try:
        yield stub
    finally:
        stub.released.set()


async def test_bounds_per_account_and_per_process(blocking: Blocking) -> None:
    lookups = Resolver(threads=3, per_account=2)
    first = [asyncio.create_task(lookups.getaddrinfo(f"a{n}.example", 443, "a1")) for n in (1, 2)]

    async def started() -> bool:
        return len(blocking.calls) == 2

    await eventually(started)
    with pytest.raises(ResolverBusy, match="account"):
        await lookups.getaddrinfo("a3.example", 443, "a1")
    other = asyncio.create_task(lookups.getaddrinfo("b1.example", 443, "a2"))
    await eventually(lambda: _true(len(blocking.calls) == 3))
    with pytest.raises(ResolverBusy, match="every lookup thread"):
        await lookups.getaddrinfo("c1.example", 443, "a3")
    assert blocking.calls == ["a1.example", "a2.example", "b1.example"]
    blocking.released.set()
    answers = await asyncio.gather(*first, other)
    assert all(answer[0][4] == ("192.0.2.1", 443) for answer in answers)
    assert lookups.busy == 0


async def test_a_thread_stays_counted_after_its_caller_gave_up(blocking: Blocking) -> None:
    lookups = Resolver(threads=1, per_account=1)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await lookups.getaddrinfo("slow.example", 443, "a1")
    # The thread is still blocked in the system call: no second lookup may start.
    assert lookups.busy == 1
    with pytest.raises(ResolverBusy):
        await lookups.getaddrinfo("other.example", 443, "a2")
    blocking.released.set()
    await eventually(lambda: _true(lookups.busy == 0))
    assert await lookups.getaddrinfo("next.example", 443, "a2")


async def _true(value: bool) -> bool:
    return value
