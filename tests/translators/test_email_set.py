"""Email/set updates and destroys against a real Dovecot, checked on the server itself with a
plain IMAP client (tests.translators.mailstate), and in what the gateway reports after."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import KEY, Mail

KEY_PROPERTY = f"header:{KEY}:asText"


@pytest.fixture
def mail(dovecot: Dovecot, jmap: Jmap) -> Iterator[Mail]:
    client = Mail(dovecot, jmap.username)
    yield client
    client.close()


async def ids_by_key(jmap: Jmap) -> dict[str, str]:
    found = await jmap.call("Email/query")
    got = await jmap.call("Email/get", ids=found["ids"], properties=[KEY_PROPERTY])
    return {e[KEY_PROPERTY]: e["id"] for e in got["list"]}


async def mailbox_ids(jmap: Jmap) -> dict[str, str]:
    """By IMAP folder name (the gateway names the INBOX "Inbox")."""
    found = {path: m["id"] for path, m in (await jmap.mailboxes()).items()}
    found["INBOX"] = found["Inbox"]
    return found


async def email(jmap: Jmap, email_id: str, *properties: str) -> dict[str, Any]:
    got = await jmap.call("Email/get", ids=[email_id], properties=list(properties))
    assert got["notFound"] == [], got
    return got["list"][0]  # type: ignore[no-any-return]


async def set_(jmap: Jmap, **args: Any) -> dict[str, Any]:
    return await jmap.call("Email/set", **args)


async def test_mark_read_is_a_store_on_the_server_and_a_change_everywhere(
    jmap: Jmap, mail: Mail
) -> None:
    for key in ("a", "b", "c"):
        mail.append("INBOX", key)
    ids = await ids_by_key(jmap)
    boxes = await mailbox_ids(jmap)
    inbox_before = (await jmap.call("Mailbox/get", ids=[boxes["INBOX"]]))["list"][0]
    email_state = (await jmap.call("Email/get", ids=[]))["state"]
    mailbox_state = (await jmap.call("Mailbox/get", ids=[]))["state"]

    result = await set_(
        jmap, update={ids["a"]: {"keywords/$seen": True}, ids["b"]: {"keywords/$flagged": True}}
    )

    assert result["updated"] == {ids["a"]: None, ids["b"]: None}
    assert result["oldState"] == email_state and result["newState"] != email_state
    assert mail.folder("INBOX") == {"a": [{"\\Seen"}], "b": [{"\\Flagged"}], "c": [set()]}
    assert (await email(jmap, ids["a"], "keywords"))["keywords"] == {"$seen": True}
    changes = await jmap.call("Email/changes", sinceState=email_state)
    assert sorted(changes["updated"]) == sorted([ids["a"], ids["b"]])
    assert changes["created"] == [] and changes["destroyed"] == []
    assert changes["newState"] == result["newState"]
    mailbox_changes = await jmap.call("Mailbox/changes", sinceState=mailbox_state)
    assert mailbox_changes["updated"] == [boxes["INBOX"]]
    inbox = (await jmap.call("Mailbox/get", ids=[boxes["INBOX"]]))["list"][0]
    assert inbox["unreadEmails"] == inbox_before["unreadEmails"] - 1


async def test_keywords_replaced_whole_end_up_exact(jmap: Jmap, mail: Mail) -> None:
    mail.append("INBOX", "a", flags="\\Seen $Forwarded")
    ids = await ids_by_key(jmap)

    keywords = {"$flagged": True, "work": True}
    result = await set_(jmap, update={ids["a"]: {"keywords": keywords}})

    assert result["updated"] == {ids["a"]: None}
    assert mail.folder("INBOX") == {"a": [{"\\Flagged", "work"}]}
    assert (await email(jmap, ids["a"], "keywords"))["keywords"] == keywords


async def test_keywords_patched_off(jmap: Jmap, mail: Mail) -> None:
    mail.append("INBOX", "a", flags="\\Seen \\Flagged")
    ids = await ids_by_key(jmap)

    await set_(jmap, update={ids["a"]: {"keywords/$seen": None}})

    assert mail.folder("INBOX") == {"a": [{"\\Flagged"}]}


async def test_move_keeps_the_email_and_its_thread(jmap: Jmap, mail: Mail) -> None:
    mail.append("INBOX", "a", flags="\\Seen")
    mail.append("INBOX", "b")
    ids = await ids_by_key(jmap)
    boxes = await mailbox_ids(jmap)
    before = await email(jmap, ids["a"], "threadId", "blobId")
    state = (await jmap.call("Email/get", ids=[]))["state"]
    thread_state = (await jmap.call("Thread/get", ids=[]))["state"]

    result = await set_(jmap, update={ids["a"]: {"mailboxIds": {boxes["Archive"]: True}}})

    assert result["updated"] == {ids["a"]: None}
    assert mail.folder("INBOX") == {"b": [set()]}
    assert mail.folder("Archive") == {"a": [{"\\Seen"}]}
    after = await email(jmap, ids["a"], "mailboxIds", "threadId", "blobId")
    assert after["mailboxIds"] == {boxes["Archive"]: True}
    assert after["threadId"] == before["threadId"] and after["blobId"] == before["blobId"]
    changes = await jmap.call("Email/changes", sinceState=state)
    assert changes["updated"] == [ids["a"]] and changes["destroyed"] == []
    threads = await jmap.call("Thread/changes", sinceState=thread_state)
    assert threads["created"] == [] and threads["destroyed"] == []
    counts = {
        m["id"]: m["totalEmails"]
        for m in (await jmap.call("Mailbox/get", ids=[boxes["INBOX"], boxes["Archive"]]))["list"]
    }
    assert counts == {boxes["INBOX"]: 1, boxes["Archive"]: 1}


async def test_mailboxes_patched_one_at_a_time(jmap: Jmap, mail: Mail) -> None:
    mail.append("INBOX", "a")
    ids = await ids_by_key(jmap)
    boxes = await mailbox_ids(jmap)

    await set_(jmap, update={ids["a"]: {f"mailboxIds/{boxes['Archive']}": True}})
    assert mail.folder("INBOX") == {"a": [set()]}
    assert mail.folder("Archive") == {"a": [set()]}
    both = await email(jmap, ids["a"], "mailboxIds")
    assert both["mailboxIds"] == {boxes["INBOX"]: True, boxes["Archive"]: True}

    await set_(jmap, update={ids["a"]: {f"mailboxIds/{boxes['INBOX']}": None}})
    assert mail.folder("INBOX") == {}
    assert mail.folder("Archive") == {"a": [set()]}


async def test_move_to_two_mailboxes_with_keywords(jmap: Jmap, mail: Mail) -> None:
    mail.append("INBOX", "a")
    ids = await ids_by_key(jmap)
    boxes = await mailbox_ids(jmap)

    patch = {
        "mailboxIds": {boxes["Archive"]: True, boxes["Junk"]: True},
        "keywords/$seen": True,
    }
    result = await set_(jmap, update={ids["a"]: patch})

    assert result["updated"] == {ids["a"]: None}
    assert mail.folder("INBOX") == {}
    assert mail.folder("Archive") == {"a": [{"\\Seen"}]}
    assert mail.folder("Junk") == {"a": [{"\\Seen"}]}


async def test_leaving_the_last_mailbox_is_refused(jmap: Jmap, mail: Mail) -> None:
    mail.append("INBOX", "a")
    ids = await ids_by_key(jmap)
    boxes = await mailbox_ids(jmap)

    result = await set_(
        jmap,
        update={
            ids["a"]: {"mailboxIds": {}},
        },
    )
    error = result["notUpdated"][ids["a"]]
    assert error["type"] == "invalidProperties" and error["properties"] == ["mailboxIds"]
    result = await set_(jmap, update={ids["a"]: {f"mailboxIds/{boxes['INBOX']}": None}})
    assert result["notUpdated"][ids["a"]]["type"] == "invalidProperties"
    assert mail.folder("INBOX") == {"a": [set()]}


@pytest.mark.parametrize(
    ("patch", "type_"),
    [
        ({"keywords/$seen/x": True}, "invalidPatch"),
        ({"keywords": {}, "keywords/$seen": True}, "invalidPatch"),
        ({"keywords/": True}, "invalidPatch"),
        ({"keywords/$seen": False}, "invalidProperties"),
        ({"keywords/bad(word": True}, "invalidProperties"),
        ({"keywords": {"$seen": False}}, "invalidProperties"),
        ({"keywords": ["$seen"]}, "invalidProperties"),
        ({"subject": "new"}, "invalidProperties"),
        ({"mailboxIds/nosuchbox": True}, "invalidProperties"),
        ({"mailboxIds": {"nosuchbox": True}}, "invalidProperties"),
    ],
)
async def test_bad_patches_change_nothing(
    jmap: Jmap, mail: Mail, patch: dict[str, Any], type_: str
) -> None:
    mail.append("INBOX", "a", flags="\\Seen")
    ids = await ids_by_key(jmap)
    state = (await jmap.call("Email/get", ids=[]))["state"]

    result = await set_(jmap, update={ids["a"]: patch})

    assert result["notUpdated"][ids["a"]]["type"] == type_
    assert result["newState"] == state
    assert mail.folder("INBOX") == {"a": [{"\\Seen"}]}


async def test_unknown_ids_state_mismatch_and_too_many_mailboxes(jmap: Jmap, mail: Mail) -> None:
    mail.append("INBOX", "a")
    ids = await ids_by_key(jmap)
    result = await set_(jmap, update={"nosuchemail": {"keywords/$seen": True}}, destroy=["gone1"])
    assert result["notUpdated"]["nosuchemail"]["type"] == "notFound"
    assert result["notDestroyed"]["gone1"]["type"] == "notFound"
    (error,) = await jmap.request(("Email/set", {"ifInState": "nope", "destroy": [ids["a"]]}))
    assert error[0] == "error" and error[1]["type"] == "stateMismatch"
    assert mail.folder("INBOX") == {"a": [set()]}


async def test_update_and_destroy_of_one_email(jmap: Jmap, mail: Mail) -> None:
    mail.append("INBOX", "a")
    ids = await ids_by_key(jmap)
    result = await set_(jmap, update={ids["a"]: {"keywords/$seen": True}}, destroy=[ids["a"]])
    assert result["notUpdated"][ids["a"]]["type"] == "willDestroy"
    assert result["destroyed"] == [ids["a"]]
    assert mail.folder("INBOX") == {}


async def test_destroy_removes_every_copy_and_nothing_else(jmap: Jmap, mail: Mail) -> None:
    mail.append("INBOX", "a")
    mail.append("INBOX", "b", flags="\\Deleted")  # another client's pending delete
    mail.append("INBOX", "c")
    mail.copy("INBOX", "a", "Archive")
    ids = await ids_by_key(jmap)
    boxes = await mailbox_ids(jmap)
    assert (await email(jmap, ids["a"], "mailboxIds"))["mailboxIds"] == {
        boxes["INBOX"]: True,
        boxes["Archive"]: True,
    }
    state = (await jmap.call("Email/get", ids=[]))["state"]

    result = await set_(jmap, destroy=[ids["a"]])

    assert result["destroyed"] == [ids["a"]]
    assert mail.folder("INBOX") == {"b": [{"\\Deleted"}], "c": [set()]}
    assert mail.folder("Archive") == {}
    changes = await jmap.call("Email/changes", sinceState=state)
    assert changes["destroyed"] == [ids["a"]]
    got = await jmap.call("Email/get", ids=[ids["a"]])
    assert got["notFound"] == [ids["a"]]
