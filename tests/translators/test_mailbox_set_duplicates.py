"""Mailbox/set: a duplicate sibling name is ``alreadyExists`` with ``existingId`` (RFC 8620 5.3,
RFC 8621 2.5), for creates and renames, on Dovecot and Cyrus.

Names the upstream takes for the same one count as duplicates: ``INBOX`` in any case (both
servers refuse ``CREATE inbox``), and, as JMAP names are Net-Unicode, a name whose NFC form is
an existing one's (both servers would keep the two spellings apart, and a client could not
tell the siblings apart). A folder another client made after the gateway's last look is found
when the upstream refuses the CREATE.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import gateway_settings, running_gateway
from tests.cyrus import Cyrus
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.upstreams import Upstream, upstream
from tests.translators.witness import Witness, mutf7

__all__ = ["upstream"]  # fixture

NFD = unicodedata.normalize("NFD", "Café")
NFC = unicodedata.normalize("NFC", "Café")


def refusal(result: dict[str, Any], key: str, kind: str = "notCreated") -> dict[str, Any]:
    errors = result[kind]
    assert errors is not None and key in errors, result
    return errors[key]  # type: ignore[no-any-return]


async def test_create_and_rename_onto_an_existing_name(upstream: Upstream) -> None:
    jmap = upstream.jmap
    boxes = await jmap.mailboxes()
    inbox, sent = boxes["Inbox"]["id"], boxes["Sent"]["id"]
    work = (await jmap.call("Mailbox/set", create={"w": {"name": "Work"}}))["created"]["w"]["id"]
    result = await jmap.call(
        "Mailbox/set",
        create={
            "same": {"name": "Work"},
            "inbox": {"name": "inbox"},
            "INBOX": {"name": "INBOX"},
            "other-case": {"name": "work"},
        },
        update={work: {"name": "Sent"}},
    )
    assert refusal(result, "same") == {
        "type": "alreadyExists",
        "existingId": work,
        "description": "a sibling has this name",
    }
    assert refusal(result, "inbox")["existingId"] == inbox
    assert refusal(result, "INBOX")["existingId"] == inbox
    # Only INBOX is case-insensitive: both upstreams keep Work and work apart.
    assert set(result["created"]) == {"other-case"}
    renamed = refusal(result, work, "notUpdated")
    assert renamed["type"] == "alreadyExists" and renamed["existingId"] == sent
    with Witness(upstream.server, upstream.user) as witness:
        names = witness.names()
    assert {"Work", "work", "Sent"} <= names


async def test_a_name_whose_nfc_form_exists(upstream: Upstream) -> None:
    jmap = upstream.jmap
    with Witness(upstream.server, upstream.user) as witness:
        witness.create(mutf7(NFD))
    existing = (await jmap.mailboxes())[NFD]["id"]
    result = await jmap.call("Mailbox/set", create={"c": {"name": NFC}})
    assert refusal(result, "c")["existingId"] == existing
    with Witness(upstream.server, upstream.user) as witness:
        assert mutf7(NFC) not in witness.names()


async def test_two_creates_of_one_name_in_one_call(upstream: Upstream) -> None:
    result = await upstream.jmap.call(
        "Mailbox/set",
        create={"first": {"name": NFC}, "second": {"name": NFD}},
    )
    assert refusal(result, "second")["existingId"] == result["created"]["first"]["id"]
    parent = (await upstream.jmap.mailboxes())["Inbox"]["id"]
    nested = await upstream.jmap.call(
        "Mailbox/set",
        create={
            "a": {"name": "Kid", "parentId": parent},
            "b": {"name": "Kid", "parentId": parent},
        },
    )
    assert refusal(nested, "b")["existingId"] == nested["created"]["a"]["id"]


@pytest.fixture(params=["dovecot", "cyrus"])
async def trusting(
    request: pytest.FixtureRequest, redis_url: str
) -> AsyncIterator[tuple[Dovecot | Cyrus, Jmap]]:
    """A gateway that trusts its index for a minute: it does not see what another client
    creates meanwhile until the upstream refuses a CREATE."""
    server: Dovecot | Cyrus = request.getfixturevalue(request.param)
    settings = gateway_settings(server.url, redis_url, sync_interval_seconds=60)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        user = server.fresh_user()
        yield server, await Jmap(http, user, server.users[user]).start()


async def test_a_name_another_client_took_meanwhile(
    trusting: tuple[Dovecot | Cyrus, Jmap],
) -> None:
    server, jmap = trusting
    await jmap.mailboxes()
    with Witness(server, jmap.username) as witness:
        witness.create("Raced")
    result = await jmap.call("Mailbox/set", create={"r": {"name": "Raced"}})
    existing = (await jmap.mailboxes())["Raced"]["id"]
    assert refusal(result, "r") == {
        "type": "alreadyExists",
        "existingId": existing,
        "description": "a sibling has this name",
    }
