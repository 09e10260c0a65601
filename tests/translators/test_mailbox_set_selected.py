"""Mailbox/set on a folder the pooled upstream connection still has selected.

Dovecot ends a session (BYE, then a reset) whose selected mailbox, or one above it, is
deleted or renamed, even by that session itself. With the sync interval trusting the index,
the connection that read an email of a folder comes back from the pool with that folder
selected; destroying it then broke the connection half way (``serverPartialFail``, or
``serverFail`` on a reset, where the upstream had done it all). A rename survived only because
the commands after it happened not to make Dovecot look at the selected mailbox; both now run
with nothing selected. RFC 8621 2.5: with
``onDestroyRemoveEmails``, emails only in the destroyed mailbox are destroyed, those also in
another mailbox stay there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import Mail
from tests.translators.witness import Witness


@pytest.fixture
async def trusting(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Jmap]:
    """A client of a gateway that trusts its index for a minute between catch-ups, as
    production does for a second: its requests do not leave the selected folder first."""
    settings = gateway_settings(dovecot.url, redis_url, sync_interval_seconds=60)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        user = dovecot.fresh_user()
        yield await Jmap(http, user, dovecot.users[user]).start()


def seed(dovecot: Dovecot, user: str, alone: int, shared: int) -> None:
    """``alone`` messages only in Doomed and ``shared`` in Doomed and in Other."""
    mail = Mail(dovecot, user)
    try:
        mail.create("Doomed", "Other")
        for index in range(alone + shared):
            mail.append("Doomed", f"m{index}")
        for index in range(alone, alone + shared):
            mail.copy("Doomed", f"m{index}", "Other")
    finally:
        mail.close()


async def select_by_reading(jmap: Jmap, mailbox_id: str, nth: int = 0) -> list[str]:
    """Every email id in the mailbox, after reading the body of its ``nth`` email held only
    there (which leaves that folder selected on the pooled connection)."""
    ids = (await jmap.call("Email/query", filter={"inMailbox": mailbox_id}))["ids"]
    emails = (await jmap.call("Email/get", ids=ids, properties=["mailboxIds"]))["list"]
    only_here = [e["id"] for e in emails if list(e["mailboxIds"]) == [mailbox_id]]
    await jmap.call("Email/get", ids=[only_here[nth]], fetchAllBodyValues=True)
    return list(ids)


@pytest.mark.parametrize(("alone", "shared"), [(1, 0), (2, 0), (1, 1), (55, 5)])
async def test_destroy_with_its_emails(
    trusting: Jmap, dovecot: Dovecot, alone: int, shared: int
) -> None:
    jmap = trusting
    seed(dovecot, jmap.username, alone, shared)
    boxes = await jmap.mailboxes()
    doomed, other = boxes["Doomed"]["id"], boxes["Other"]["id"]
    assert boxes["Doomed"]["totalEmails"] == alone + shared
    ids = await select_by_reading(jmap, doomed)
    email_state = (await jmap.call("Email/get", ids=[]))["state"]

    (response,) = await jmap.request(
        ("Mailbox/set", {"destroy": [doomed], "onDestroyRemoveEmails": True})
    )
    assert response[0] == "Mailbox/set", response
    assert response[1]["destroyed"] == [doomed] and response[1]["notDestroyed"] is None

    with Witness(dovecot, jmap.username) as witness:
        assert "Doomed" not in witness.names()
        assert witness.status("Other").get("MESSAGES") == shared
    got = await jmap.call("Email/get", ids=ids, properties=["mailboxIds"])
    assert [e["mailboxIds"] for e in got["list"]] == [{other: True}] * shared
    assert len(got["notFound"]) == alone
    changes = await jmap.call("Email/changes", sinceState=email_state)
    assert sorted(changes["destroyed"]) == sorted(got["notFound"])
    assert sorted(changes["updated"]) == sorted(e["id"] for e in got["list"])
    assert doomed not in {m["id"] for m in (await jmap.call("Mailbox/get", ids=None))["list"]}


async def test_rename_of_the_selected_folder_and_of_its_parent(
    trusting: Jmap, dovecot: Dovecot
) -> None:
    jmap = trusting
    mail = Mail(dovecot, jmap.username)
    try:
        mail.create("Top", "Top/Low")
        mail.append("Top/Low", "k0")
        mail.append("Top/Low", "k1")
        # Subscribed: the subscriptions that follow a RENAME are the commands Dovecot
        # answered with BYE.
        for folder in ("Top", "Top/Low"):
            assert mail.imap.subscribe(folder)[0] == "OK"
    finally:
        mail.close()
    boxes = await jmap.mailboxes()
    top, low = boxes["Top"]["id"], boxes["Top/Low"]["id"]
    for nth, (mailbox_id, patch) in enumerate(((low, {"name": "Lower"}), (top, {"name": "Upper"}))):
        await select_by_reading(jmap, low, nth)
        (response,) = await jmap.request(("Mailbox/set", {"update": {mailbox_id: patch}}))
        assert response[0] == "Mailbox/set", response
        assert response[1]["updated"] == {mailbox_id: None}
    with Witness(dovecot, jmap.username) as witness:
        assert {"Upper", "Upper/Lower"} <= witness.subscribed()
        assert witness.status("Upper/Lower")["MESSAGES"] == 2
    assert (await jmap.mailboxes())["Upper/Lower"]["totalEmails"] == 2
