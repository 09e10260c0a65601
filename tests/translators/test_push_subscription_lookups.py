"""Push URL lookups cannot stall other users (review 17 H1): they run in threads of their own,
never the loop's default executor that IMAP connects use, and past their bounds they are
refused at once instead of queueing; a request has one lookup budget, whatever its calls.

DNS is stubbed (it is outbound, like HTTP): names under ``hang.test`` never answer until the
test lets them; every other name goes to the system resolver."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.webpush import resolver
from gateway.webpush.resolver import MAX_PER_ACCOUNT, RESOLVER
from tests.conftest import gateway_settings
from tests.push.webpush_gateway import eventually
from tests.servers import Dovecot
from tests.translators.push_subscriptions import User, push_gateway, push_settings

WAIT_SECONDS = 10.0
REQUESTS = 8  # GATEWAY_MAX_CONCURRENT_REQUESTS' default: all one user may have in flight


class HangingDns:
    """getaddrinfo whose ``hang.test`` names block their thread until :meth:`free`."""

    def __init__(self) -> None:
        self.real = socket.getaddrinfo
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.hanging = 0

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if not str(host).endswith(".hang.test"):
            return self.real(host, port, *args, **kwargs)
        with self.lock:
            self.hanging += 1
        try:
            self.released.wait(60)
            raise socket.gaierror(socket.EAI_AGAIN, "no answer (test)")
        finally:
            with self.lock:
                self.hanging -= 1

    def free(self) -> None:
        self.released.set()


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[HangingDns]:
    stub = HangingDns()
    # Both: the loop's default executor calls socket.getaddrinfo, the push resolver its own.
    monkeypatch.setattr(socket, "getaddrinfo", stub)
    monkeypatch.setattr(resolver, "system_getaddrinfo", stub)
    try:
        yield stub
    finally:
        stub.free()


async def test_hanging_push_lookups_never_hold_up_another_users_imap_login(
    dovecot: Dovecot, redis_url: str, dns: HangingDns
) -> None:
    # The upstream by name, so the IMAP connect asks getaddrinfo in the loop's default
    # executor, as a deployment's does (an IP literal would skip it).
    imap_url = dovecot.url.replace("127.0.0.1", "localhost")
    settings = gateway_settings(imap_url, redis_url, auth_cache_seconds=0)
    async with push_gateway(settings) as http:
        mallory = await User(http, dovecot).start()
        creates = [
            asyncio.create_task(
                mallory.call(
                    "PushSubscription/set",
                    create={"k": {"deviceClientId": "d", "url": f"https://x{n}.hang.test/p"}},
                )
            )
            for n in range(REQUESTS)
        ]
        try:

            async def lookups_hang() -> bool:
                return dns.hanging >= MAX_PER_ACCOUNT

            await eventually(lookups_hang)
            # Another user's first request: a login, so an IMAP connect to the upstream.
            async with asyncio.timeout(WAIT_SECONDS):
                bob = await User(http, dovecot).start()
            assert bob.account_id
            assert dns.hanging >= MAX_PER_ACCOUNT  # the push lookups are still hanging
            answers = await asyncio.gather(*creates)
        finally:
            dns.free()
            await asyncio.gather(*creates, return_exceptions=True)
    errors = [answer["notCreated"]["k"] for answer in answers]
    busy = [e for e in errors if e["type"] == "rateLimit"]
    assert len(busy) == REQUESTS - MAX_PER_ACCOUNT, errors
    assert all("temporarily unavailable" in e["description"] for e in busy)
    slow = [e for e in errors if e["type"] != "rateLimit"]
    assert [e["description"] for e in slow] == ["the host name did not resolve in time"] * len(slow)

    async def threads_free() -> bool:
        return RESOLVER.busy == 0

    await eventually(threads_free)


async def test_one_request_has_one_lookup_budget_across_its_calls(
    dovecot: Dovecot, redis_url: str
) -> None:
    """localhost resolves to loopback: each create makes a lookup and is refused after it, so
    no subscription is stored and only the lookup budget can stop the later ones."""
    settings = push_settings(dovecot, redis_url, push_subscriptions_per_account=2)
    async with push_gateway(settings) as http:
        user = await User(http, dovecot).start()
        create = {
            f"k{n}": {"deviceClientId": "d", "url": f"https://localhost/p{n}"} for n in range(2)
        }
        first, second = await user.request(
            ("PushSubscription/set", {"create": create}),
            ("PushSubscription/set", {"create": create}),
        )
        assert {e["type"] for e in first[1]["notCreated"].values()} == {"invalidProperties"}
        assert [e["description"] for e in second[1]["notCreated"].values()] == [
            "at most 2 push URLs are checked in one request"
        ] * 2
        # The next request has a budget of its own.
        (third,) = await user.request(("PushSubscription/set", {"create": create}))
        assert {e["type"] for e in third[1]["notCreated"].values()} == {"invalidProperties"}
