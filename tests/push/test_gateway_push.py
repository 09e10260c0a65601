"""A change made through the gateway's API reaches a listener at once: the writer's commit
is announced by the hub, with no watcher of the upstream involved."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from gateway.services import Services
from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import Jmap
from tests.servers import Dovecot

WAIT = 10.0


@pytest.fixture
async def served(dovecot: Dovecot, redis_url: str) -> AsyncIterator[tuple[Services, Jmap]]:
    """A gateway, its services, and a JMAP client of a fresh user."""
    settings = gateway_settings(dovecot.url, redis_url)
    app = create_app(settings)
    async with (
        running_gateway(settings, app) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        user = dovecot.fresh_user()
        yield app.state.services, await Jmap(http, user, dovecot.users[user]).start()


async def test_an_email_set_reaches_a_listener_at_once(served: tuple[Services, Jmap]) -> None:
    svc, jmap = served
    inbox = (await jmap.mailboxes())["Inbox"]["id"]
    async with svc.push.listen(jmap.account_id, None, None) as sub:
        created = await jmap.call(
            "Email/set",
            create={
                "m": {
                    "mailboxIds": {inbox: True},
                    "subject": "pushed",
                    "bodyStructure": {"type": "text/plain", "partId": "1"},
                    "bodyValues": {"1": {"value": "Hello\r\n"}},
                }
            },
        )
        assert "m" in created["created"], created
        changed = await sub.next(WAIT)
        assert changed is not None
        # The states pushed are those the API answers now (its /get states).
        states = changed[jmap.account_id]
        assert states["Email"] == created["newState"]
        mailbox_state = (await jmap.call("Mailbox/get", ids=[]))["state"]
        thread_state = (await jmap.call("Thread/get", ids=[]))["state"]
        later = await sub.next(0.5)
        seen = {**states, **(later or {}).get(jmap.account_id, {})}
        assert seen["Mailbox"] == mailbox_state and seen["Thread"] == thread_state
