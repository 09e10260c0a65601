"""Mailbox/changes after changes made by ANOTHER plain IMAP client, and the epoch rule."""

from __future__ import annotations

import redis

from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.witness import Witness

COUNTS = ["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"]


async def state(jmap: Jmap) -> str:
    return str((await jmap.call("Mailbox/get", ids=[]))["state"])


async def test_folders_created_renamed_deleted_elsewhere(jmap: Jmap, dovecot: Dovecot) -> None:
    with Witness(dovecot, jmap.username) as witness:
        witness.create("Old")
        witness.create("Doomed")
    before = await jmap.mailboxes()
    since = await state(jmap)
    with Witness(dovecot, jmap.username) as witness:
        witness.create("Fresh")
        witness.rename("Old", "Renamed")
        witness.delete("Doomed")
    changes = await jmap.call("Mailbox/changes", sinceState=since)
    after = await jmap.mailboxes()
    assert changes["created"] == [after["Fresh"]["id"]]
    # Dovecot's mailbox GUID survives a rename by any client: same id, new name.
    assert changes["updated"] == [before["Old"]["id"]] == [after["Renamed"]["id"]]
    assert changes["destroyed"] == [before["Doomed"]["id"]]
    assert changes["updatedProperties"] is None
    assert changes["oldState"] == since and changes["newState"] == await state(jmap)
    assert not changes["hasMoreChanges"]
    again = await jmap.call("Mailbox/changes", sinceState=changes["newState"])
    assert again["created"] == again["updated"] == again["destroyed"] == []


async def test_new_mail_is_a_counts_only_change(jmap: Jmap, dovecot: Dovecot) -> None:
    inbox = (await jmap.mailboxes())["Inbox"]
    since = await state(jmap)
    with Witness(dovecot, jmap.username) as witness:
        witness.append("INBOX", "hello")
    changes = await jmap.call("Mailbox/changes", sinceState=since)
    assert changes["updated"] == [inbox["id"]]
    assert changes["updatedProperties"] == COUNTS
    with Witness(dovecot, jmap.username) as witness:
        witness.store("INBOX", "\\Seen")
    later = await jmap.call("Mailbox/changes", sinceState=changes["newState"])
    assert later["updated"] == [inbox["id"]] and later["updatedProperties"] == COUNTS
    assert (await jmap.mailboxes())["Inbox"]["unreadEmails"] == 0


async def test_updated_properties_as_a_back_reference(jmap: Jmap, dovecot: Dovecot) -> None:
    since = await state(jmap)
    with Witness(dovecot, jmap.username) as witness:
        witness.append("INBOX", "hello")
    _, got = await jmap.request(
        ("Mailbox/changes", {"sinceState": since}),
        (
            "Mailbox/get",
            {
                "#ids": {"resultOf": "c0", "name": "Mailbox/changes", "path": "/updated"},
                "#properties": {
                    "resultOf": "c0",
                    "name": "Mailbox/changes",
                    "path": "/updatedProperties",
                },
            },
        ),
    )
    (inbox,) = got[1]["list"]
    assert set(inbox) == {"id", *COUNTS} and inbox["totalEmails"] == 1


async def test_max_changes_pages_through(jmap: Jmap, dovecot: Dovecot) -> None:
    since = await state(jmap)
    with Witness(dovecot, jmap.username) as witness:
        for i in range(5):
            witness.create(f"Box{i}")
    seen: list[str] = []
    while True:
        page = await jmap.call("Mailbox/changes", sinceState=since, maxChanges=2)
        assert len(page["created"]) <= 2
        seen += page["created"]
        since = page["newState"]
        if not page["hasMoreChanges"]:
            break
    names = await jmap.mailboxes()
    assert sorted(seen) == sorted(names[f"Box{i}"]["id"] for i in range(5))


async def test_unknown_state_cannot_be_calculated(jmap: Jmap) -> None:
    (response,) = await jmap.request(("Mailbox/changes", {"sinceState": "nonsense"}))
    assert response[0] == "error" and response[1]["type"] == "cannotCalculateChanges"


async def test_state_from_before_redis_lost_its_data(jmap: Jmap, redis_url: str) -> None:
    old = await state(jmap)
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.close()
    (response,) = await jmap.request(("Mailbox/changes", {"sinceState": old}))
    assert response[0] == "error" and response[1]["type"] == "cannotCalculateChanges"
    assert await state(jmap) != old
