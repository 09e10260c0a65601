"""Push subscriptions (issue 17) on loopback against a real Dovecot and Redis, the gateway as
its own process, pushes received by the tests' loopback push service
(tests/push/webpush_receiver.py). Prints two tables, each beside its baseline from the same
run, a WebSocket client of the same account (RFC 8887 push):

* **APPEND to push**: the time from a plain ``imaplib`` APPEND into INBOX by another client to
  the push (a StateChange with the new Email state) reaching the push service, p50/p95/max
  over ``--appends`` appends 0.5 s apart, GATEWAY_WEBPUSH_MIN_INTERVAL_SECONDS 0 (no throttle);
  beside it the same APPENDs' WebSocket StateChange. The WebSocket's listener is what keeps the
  account's watcher here (no master user configured).
* **A burst**: ``--burst`` Email/set calls back to back through the API (a client marking
  messages read one by one: each its own commit), with the default throttle (5 s): the pushes
  the subscription got until one named the Email state Email/get answers after the burst,
  beside the StateChanges the WebSocket got meanwhile (a burst of APPENDs by another client
  is coalesced by the watcher's catch-up already, for both).

Run: .venv/bin/python -m bench.webpush [--appends 30] [--burst 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from bench.push import _account_id, append, basic, email_state_change, open_websocket
from bench.servers import local_dovecot, local_redis
from tests.gateways import GatewayProcess, gateways
from tests.push.webpush_receiver import WebPushReceiver
from tests.servers import Dovecot

WAIT_SECONDS = 60.0
CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
PUSH_SETTINGS = {
    "webpush_allow_http": "true",
    "webpush_allowed_destinations": "127.0.0.1",
    "log_level": "warning",
}


async def api(gateway: GatewayProcess, authorization: str, call: list[Any], using: str) -> Any:
    body = {"using": [CORE, using] if using != CORE else [CORE], "methodCalls": [call]}
    async with httpx.AsyncClient(timeout=WAIT_SECONDS) as http:
        answer = await http.post(
            gateway.base_url + "/jmap/api/", json=body, headers={"Authorization": authorization}
        )
    return answer.json()["methodResponses"][0][1]


async def email_state(gateway: GatewayProcess, authorization: str, account_id: str) -> str:
    call = ["Email/get", {"accountId": account_id, "ids": []}, "g"]
    return str((await api(gateway, authorization, call, MAIL))["state"])


async def subscribed(
    gateway: GatewayProcess, authorization: str, receiver: WebPushReceiver
) -> None:
    """A verified subscription to the receiver (RFC 8620 7.2.2's flow)."""
    create = {"s": {"deviceClientId": "bench", "url": receiver.url(), "types": ["Email"]}}
    call = ["PushSubscription/set", {"create": create}, "c"]
    sub_id = (await api(gateway, authorization, call, CORE))["created"]["s"]["id"]
    (verification,) = await receiver.wait_for(1, timeout=WAIT_SECONDS)
    code = json.loads(verification.body)["verificationCode"]
    update = ["PushSubscription/set", {"update": {sub_id: {"verificationCode": code}}}, "u"]
    await api(gateway, authorization, update, CORE)


class Pushes:
    """The receiver's pushes of one account, read in order."""

    def __init__(self, receiver: WebPushReceiver, account_id: str) -> None:
        self.receiver = receiver
        self.account_id = account_id
        self.read = len(receiver.requests)

    async def next_state(self, old: str | None) -> str:
        """The Email state of the next push naming one other than ``old``."""
        while True:
            await self.receiver.wait_for(self.read + 1, timeout=WAIT_SECONDS)
            body = json.loads(self.receiver.requests[self.read].body)
            self.read += 1
            if body["@type"] == "StateChange":
                state = body["changed"].get(self.account_id, {}).get("Email")
                if state is not None and state != old:
                    return str(state)


async def account(
    dovecot: Dovecot, redis_url: str, receiver: WebPushReceiver, **env: str
) -> tuple[GatewayProcess, str, Pushes, ClientConnection, str]:
    user = dovecot.fresh_user()
    authorization = basic(user, dovecot.users[user])
    (gateway,) = gateways(1, imap_url=dovecot.url, redis_url=redis_url, **PUSH_SETTINGS, **env)
    await gateway.start()
    account_id = await _account_id(gateway, authorization)
    socket = await open_websocket(gateway.port, authorization)
    await subscribed(gateway, authorization, receiver)
    pushes = Pushes(receiver, account_id)
    # The first APPEND also waits for the watcher to start.
    await asyncio.to_thread(append, dovecot, user)
    state = await asyncio.wait_for(email_state_change(socket, account_id, None), WAIT_SECONDS)
    while await pushes.next_state(None) != state:
        pass
    return gateway, user, pushes, socket, state


async def timed(started: float, work: Any) -> tuple[str, float]:
    result = await work
    return result, (time.perf_counter() - started) * 1000


def summary(name: str, times: list[float]) -> dict[str, Any]:
    times = sorted(times)
    return {
        "delivery": name,
        "appends": len(times),
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
        "max_ms": round(times[-1], 1),
    }


async def latency(dovecot: Dovecot, redis_url: str, appends: int) -> list[dict[str, Any]]:
    async with WebPushReceiver() as receiver:
        gateway, user, pushes, socket, state = await account(
            dovecot, redis_url, receiver, webpush_min_interval_seconds="0"
        )
        account_id = pushes.account_id
        try:
            pushed_ms: list[float] = []
            sockets: list[float] = []
            pushed = state
            for _ in range(appends):
                await asyncio.sleep(0.5)
                started = time.perf_counter()
                await asyncio.to_thread(append, dovecot, user)
                (state, ws_ms), (pushed, push_ms) = await asyncio.gather(
                    timed(started, email_state_change(socket, account_id, state)),
                    timed(started, pushes.next_state(pushed)),
                )
                sockets.append(ws_ms)
                pushed_ms.append(push_ms)
            await socket.close()
        finally:
            gateway.kill()
    return [summary("WebSocket StateChange (baseline)", sockets), summary("Web Push", pushed_ms)]


async def burst(dovecot: Dovecot, redis_url: str, count: int) -> list[dict[str, Any]]:
    async with WebPushReceiver() as receiver:
        gateway, user, pushes, socket, state = await account(dovecot, redis_url, receiver)
        account_id = pushes.account_id
        authorization = basic(user, dovecot.users[user])
        try:
            before = pushes.read
            heard = 0

            async def listen() -> None:
                nonlocal heard, state
                while True:
                    state = await email_state_change(socket, account_id, state)
                    heard += 1

            query = ["Email/query", {"accountId": account_id, "limit": 1}, "q"]
            (target,) = (await api(gateway, authorization, query, MAIL))["ids"]
            listening = asyncio.create_task(listen())
            for i in range(count):
                seen = True if i % 2 == 0 else None
                patch = {target: {"keywords/$seen": seen}}
                call = ["Email/set", {"accountId": account_id, "update": patch}, "s"]
                await api(gateway, authorization, call, MAIL)
            final = await email_state(gateway, authorization, account_id)
            pushed = None
            while pushed != final:
                pushed = await pushes.next_state(pushed)
            listening.cancel()
            sent = pushes.read - before
            await socket.close()
        finally:
            gateway.kill()
    return [
        {"delivery": "WebSocket StateChanges (baseline)", "Email/sets": count, "messages": heard},
        {"delivery": "Web Push, 5 s throttle", "Email/sets": count, "messages": sent},
    ]


def table(rows: list[dict[str, Any]]) -> None:
    keys = list(rows[0])
    widths = [max(len(k), *(len(str(r[k])) for r in rows)) for k in keys]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[k]).ljust(w) for k, w in zip(keys, widths, strict=True)))
    print()


async def run(appends: int, count: int) -> None:
    with local_dovecot() as dovecot, local_redis() as redis:
        table(await latency(dovecot, redis.url, appends))
        table(await burst(dovecot, redis.url, count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--appends", type=int, default=30)
    parser.add_argument("--burst", type=int, default=20)
    options = parser.parse_args()
    asyncio.run(run(options.appends, options.burst))


if __name__ == "__main__":
    main()
