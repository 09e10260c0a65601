"""Email/set seen by other replicas, and guarded against changes its index has not seen yet.

Both gateways trust the shared index for an hour (GATEWAY_SYNC_INTERVAL_SECONDS), so the
second one can only know of a change the first made through what the first wrote to Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest

from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import Mail
from tests.translators.test_email_set import ids_by_key, mailbox_ids

TRUSTING = 3600


@pytest.fixture
async def pair(dovecot: Dovecot, redis_url: str) -> AsyncIterator[tuple[Jmap, Jmap]]:
    user = dovecot.fresh_user()
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            settings = gateway_settings(dovecot.url, redis_url, sync_interval_seconds=TRUSTING)
            url = await stack.enter_async_context(running_gateway(settings))
            http = await stack.enter_async_context(httpx.AsyncClient(base_url=url))
            clients.append(await Jmap(http, user, dovecot.users[user]).start())
        yield clients[0], clients[1]


async def test_a_second_gateway_sees_every_change(
    dovecot: Dovecot, pair: tuple[Jmap, Jmap]
) -> None:
    first, second = pair
    mail = Mail(dovecot, first.username)
    for key in ("a", "b"):
        mail.append("INBOX", key)
    mail.close()
    ids = await ids_by_key(first)
    boxes = await mailbox_ids(first)
    email_state = (await second.call("Email/get", ids=[]))["state"]
    mailbox_state = (await second.call("Mailbox/get", ids=[]))["state"]
    thread_state = (await second.call("Thread/get", ids=[]))["state"]
    query = {"filter": {"inMailbox": boxes["Archive"]}}
    query_state = (await second.call("Email/query", **query))["queryState"]

    result = await first.call(
        "Email/set",
        update={
            ids["a"]: {"keywords/$seen": True, "mailboxIds": {boxes["Archive"]: True}},
        },
        destroy=[ids["b"]],
    )
    assert result["updated"] == {ids["a"]: None} and result["destroyed"] == [ids["b"]]

    changes = await second.call("Email/changes", sinceState=email_state)
    assert changes["updated"] == [ids["a"]] and changes["destroyed"] == [ids["b"]]
    got = await second.call("Email/get", ids=[ids["a"]], properties=["keywords", "mailboxIds"])
    assert got["list"][0] == {
        "id": ids["a"],
        "keywords": {"$seen": True},
        "mailboxIds": {boxes["Archive"]: True},
    }
    mailbox_changes = await second.call("Mailbox/changes", sinceState=mailbox_state)
    assert set(mailbox_changes["updated"]) == {boxes["INBOX"], boxes["Archive"]}
    counts = await second.call("Mailbox/get", ids=[boxes["INBOX"], boxes["Archive"]])
    totals = {m["id"]: m["totalEmails"] for m in counts["list"]}
    assert totals == {boxes["INBOX"]: 0, boxes["Archive"]: 1}
    threads = await second.call("Thread/changes", sinceState=thread_state)
    assert len(threads["destroyed"]) == 1
    query_changes = await second.call("Email/queryChanges", sinceQueryState=query_state, **query)
    assert query_changes["added"] == [{"id": ids["a"], "index": 0}]


async def test_whole_keywords_are_exact_despite_an_unseen_change(
    dovecot: Dovecot, pair: tuple[Jmap, Jmap]
) -> None:
    first, _ = pair
    mail = Mail(dovecot, first.username)
    mail.append("INBOX", "a", flags="\\Seen")
    ids = await ids_by_key(first)
    # Another IMAP client flags it; the gateway's index (trusted for an hour) does not know.
    uid = mail.uids("INBOX", "a")[0]
    mail.imap.select("INBOX")
    mail.imap.uid("STORE", uid, "+FLAGS", "(\\Flagged work)")

    result = await first.call("Email/set", update={ids["a"]: {"keywords": {"$answered": True}}})

    assert result["updated"] == {ids["a"]: None}, result
    assert mail.folder("INBOX") == {"a": [{"\\Answered"}]}
    mail.close()
