"""Every path that writes the index announces its state changes through the Journal.

The journal is where push will publish (gateway.cache.journal): each writing path a client or
another IMAP client can cause is run through a real gateway, and what the journal announced
must name the types that changed with the very states the responses report afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence

import pytest

from gateway.cache.journal import StateChange, listening
from gateway.cache.locks import LeaseLost
from gateway.cache.store import Store
from gateway.sync.index_writer import IndexWriter, NewCopy
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.witness import Witness, message


class Heard:
    """The announcements of one account, call by call."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.changes: list[StateChange] = []

    def __call__(self, account_id: str, changes: Sequence[StateChange]) -> None:
        if account_id == self.account_id:
            self.changes.extend(changes)

    def take(self) -> dict[str, str]:
        """The last state announced per type since the previous take."""
        latest = {change.data_type: change.state for change in self.changes}
        self.changes.clear()
        return latest


@pytest.fixture
def heard(jmap: Jmap) -> Iterator[Heard]:
    listener = Heard(jmap.account_id)
    with listening(listener):
        yield listener


async def states(jmap: Jmap) -> dict[str, str]:
    answers = await jmap.request(
        ("Mailbox/get", {"ids": []}), ("Email/get", {"ids": []}), ("Thread/get", {"ids": []})
    )
    return {name.split("/")[0]: answer["state"] for name, answer, _ in answers}


def moved(before: dict[str, str], after: dict[str, str]) -> dict[str, str]:
    return {t: s for t, s in after.items() if before.get(t) != s}


async def test_every_writing_path_announces_its_changes(
    dovecot: Dovecot, jmap: Jmap, heard: Heard
) -> None:
    # Mailbox sync: the account's first look lists its folders.
    first = await states(jmap)
    assert heard.take() == {"Mailbox": first["Mailbox"]}

    # Email sync: mail another client delivered.
    with Witness(dovecot, jmap.username) as witness:
        witness.append("INBOX", "one")
        witness.append("INBOX", "two")
    synced = await states(jmap)
    assert heard.take() == moved(first, synced) == synced  # counts, emails, threads
    ids = (await jmap.call("Email/query"))["ids"]
    inbox = next(iter((await jmap.call("Mailbox/query", filter={"role": "inbox"}))["ids"]))

    # Email/set keywords: written from the STORE's answers, without a catch-up.
    result = await jmap.call("Email/set", update={ids[0]: {"keywords/$seen": True}})
    after = await states(jmap)
    assert heard.take() == moved(synced, after)
    assert set(moved(synced, after)) == {"Email", "Mailbox"}  # unreadEmails moved
    assert after["Email"] == result["newState"]

    # Email/set destroy: expunged upstream, read back by a catch-up.
    result = await jmap.call("Email/set", destroy=[ids[1]])
    assert result["destroyed"] == [ids[1]]
    destroyed = await states(jmap)
    assert heard.take() == moved(after, destroyed)
    assert set(moved(after, destroyed)) == {"Email", "Mailbox", "Thread"}
    assert destroyed["Email"] == result["newState"]

    # Mailbox/set create, and a client's sortOrder (the index's own data).
    result = await jmap.call("Mailbox/set", create={"k": {"name": "Work"}})
    created = await states(jmap)
    assert heard.take() == {"Mailbox": created["Mailbox"]} == {"Mailbox": result["newState"]}
    work = result["created"]["k"]["id"]
    result = await jmap.call("Mailbox/set", update={work: {"sortOrder": 7}})
    assert heard.take() == {"Mailbox": result["newState"]}

    # Email/import: APPENDed, read back by a catch-up.
    blob = await jmap.upload(message("imported"), "message/rfc822")
    result = await jmap.call(
        "Email/import", emails={"i": {"blobId": blob, "mailboxIds": {inbox: True}}}
    )
    assert "i" in result["created"], result
    imported = await states(jmap)
    assert heard.take() == moved(created, imported)
    assert set(moved(created, imported)) == {"Email", "Mailbox", "Thread"}
    assert imported["Email"] == result["newState"]

    # Reads change nothing and announce nothing.
    await jmap.call("Email/get", ids=ids, properties=["subject", "keywords"])
    assert await states(jmap) == imported
    assert heard.take() == {}


async def test_a_write_that_does_not_commit_announces_nothing(redis_url: str) -> None:
    """Announced only after EXEC: a batch whose lease changed hands is refused whole."""
    store = Store.from_url(redis_url)
    emails = store.emails("a" + secrets.token_hex(4))
    listener = Heard(emails.account_id)
    try:
        with listening(listener):
            async with emails.lease() as held:
                writer = IndexWriter(emails, held)
                await writer.add_copies("m1", [NewCopy(1, "e1", [], 0, 10, "t1")])
                assert [c.data_type for c in listener.changes] == ["Email", "Thread", "Mailbox"]
                assert writer.changes == listener.changes
                assert listener.take()["Email"] == await emails.state.state("Email")
                await store.client.set(emails.keys.lock("emails"), "someone-else")
                with pytest.raises(LeaseLost):
                    await writer.add_copies("m1", [NewCopy(2, "e2", [], 0, 10, "t2")])
        assert listener.changes == []
        assert await emails.records(["e2"]) == {}
    finally:
        await store.close()
