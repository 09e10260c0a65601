"""Push across two real gateway processes on one Redis (issue 15's test of replicas): a listener
on one hears a change made through the other and one found by the other's watcher, and killing
the watching process (kill -9: no release, no goodbye) moves the watch to the survivor.

Ground truth: the state each type's /get answers, and which process watches as each process's
own metrics say (``jmap_gateway_push_watched_accounts``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection

from tests.gateways import GatewayProcess, running_gateways
from tests.jmapclient import CORE, MAIL
from tests.jmapsocket import basic, jmap_socket, receive_where, request
from tests.push.watching import imap, message
from tests.servers import Dovecot

Wanted = Callable[[dict[str, Any]], bool]
# Short, so the takeover is quick; the test waits on events, never on times.
LEASE_SECONDS = "3"
WAIT = 30.0


async def watched(process: GatewayProcess) -> float:
    """How many accounts this process watches, by its own metrics."""
    for family in text_string_to_metric_families(await process.metrics()):
        if family.name == "jmap_gateway_push_watched_accounts":
            return sum(sample.value for sample in family.samples)
    return 0.0


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(WAIT):
        while not await check():
            await asyncio.sleep(0.1)


async def push_on(socket: ClientConnection) -> None:
    await socket.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))


def state_change(account: str, data_type: str, test: Callable[[str], bool]) -> Wanted:
    def wanted(m: dict[str, Any]) -> bool:
        told = m["changed"].get(account, {}) if m["@type"] == "StateChange" else {}
        return data_type in told and test(told[data_type])

    return wanted


async def hears(socket: ClientConnection, account: str, data_type: str, state: str) -> None:
    """Wait for a StateChange telling ``state`` of ``data_type``."""
    await receive_where(socket, state_change(account, data_type, lambda s: s == state), WAIT)


async def hears_past(socket: ClientConnection, account: str, before: str) -> str:
    """The Email state of the first StateChange telling one other than ``before``."""
    told = await receive_where(socket, state_change(account, "Email", lambda s: s != before), WAIT)
    return str(told["changed"][account]["Email"])


async def email_state(base_url: str, auth: httpx.BasicAuth, account: str) -> str:
    """What Email/get answers (the request catches up first)."""
    call = ["Email/get", {"accountId": account, "ids": []}, "g"]
    body = {"using": [CORE, MAIL], "methodCalls": [call]}
    async with httpx.AsyncClient(timeout=WAIT) as http:
        answer = (await http.post(base_url + "/jmap/api/", json=body, auth=auth)).json()
    return str(answer["methodResponses"][0][1]["state"])


async def test_two_processes_share_changes_and_the_watch_survives_a_kill(
    dovecot: Dovecot, redis_url: str
) -> None:
    user = dovecot.fresh_user()
    password = dovecot.users[user]
    auth = httpx.BasicAuth(user, password)
    async with running_gateways(
        2, imap_url=dovecot.url, redis_url=redis_url, push_watch_lease_seconds=LEASE_SECONDS
    ) as processes:
        one, two = processes
        async with httpx.AsyncClient(timeout=WAIT) as http:
            session = (await http.get(one.base_url + "/jmap/session", auth=auth)).json()
        account = session["primaryAccounts"][MAIL]
        async with (
            jmap_socket(one.base_url, basic(user, password)) as on_one,
            jmap_socket(two.base_url, basic(user, password)) as on_two,
        ):
            sockets = {one.pid: on_one, two.pid: on_two}
            for socket in sockets.values():
                await push_on(socket)

            # A change made through process two reaches the listener on process one.
            create = {"accountId": account, "create": {"m": {"name": "Pushed"}}}
            answer = await request(
                on_two,
                {"using": [CORE, MAIL], "methodCalls": [["Mailbox/set", create, "c"]]},
                "create",
            )
            new_state = answer["methodResponses"][0][1]["newState"]
            await hears(on_one, account, "Mailbox", new_state)

            # Exactly one process watches the account.
            async def one_watcher() -> bool:
                counts = [await watched(p) for p in processes]
                return sorted(counts) == [0.0, 1.0]

            await eventually(one_watcher)
            watcher = one if await watched(one) == 1.0 else two
            survivor = two if watcher is one else one

            # An APPEND by another IMAP client, found by the watcher (no request is made until
            # both listeners heard it): both hear the state Email/get then answers.
            before = await email_state(survivor.base_url, auth, account)
            await imap(dovecot, user, lambda c: c.append("INBOX", "", None, message("first")))
            heard = {await hears_past(socket, account, before) for socket in sockets.values()}
            assert heard == {await email_state(survivor.base_url, auth, account)}

            # kill -9 the watcher: its lease is never released; the survivor takes over once
            # it expires, and the next APPEND reaches the survivor's listener through it.
            watcher.kill()

            async def survivor_watches() -> bool:
                return await watched(survivor) == 1.0

            await eventually(survivor_watches)
            (before,) = heard
            await imap(dovecot, user, lambda c: c.append("INBOX", "", None, message("second")))
            after = await hears_past(sockets[survivor.pid], account, before)
            assert after == await email_state(survivor.base_url, auth, account)
