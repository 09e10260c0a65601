"""Mailbox/get against a real Dovecot: roles, counts equal to STATUS, names, hierarchy."""

from __future__ import annotations

from tests.jmapclient import MAILBOX_RIGHTS, Jmap
from tests.servers import Dovecot
from tests.translators.witness import Witness, mutf7

RIGHTS = set(MAILBOX_RIGHTS)


async def test_special_use_folders_get_their_roles(jmap: Jmap) -> None:
    mailboxes = await jmap.mailboxes()
    roles = {path: m["role"] for path, m in mailboxes.items()}
    assert roles == {
        "Inbox": "inbox",
        "Drafts": "drafts",
        "Sent": "sent",
        "Trash": "trash",
        "Junk": "junk",
        "Archive": "archive",
    }
    inbox = mailboxes["Inbox"]
    assert inbox["parentId"] is None
    assert set(inbox["myRights"]) == RIGHTS
    assert inbox["myRights"]["mayDelete"] is False and inbox["myRights"]["mayRename"] is False
    assert mailboxes["Sent"]["myRights"]["mayDelete"] is True
    assert inbox["sortOrder"] < mailboxes["Trash"]["sortOrder"]
    assert mailboxes["Sent"]["isSubscribed"] is True


async def test_counts_equal_what_status_says(jmap: Jmap, dovecot: Dovecot) -> None:
    username = jmap.username
    with Witness(dovecot, username) as witness:
        witness.create("Lists")
        for i in range(5):
            witness.append("INBOX", f"m{i}", "\\Seen" if i % 2 else "")
        witness.append("Lists", "l1")
        expected = {name: witness.status(name) for name in ("INBOX", "Lists", "Sent")}
    mailboxes = await jmap.mailboxes()
    for path, name in (("Inbox", "INBOX"), ("Lists", "Lists"), ("Sent", "Sent")):
        box = mailboxes[path]
        assert box["totalEmails"] == expected[name]["MESSAGES"]
        assert box["unreadEmails"] == expected[name]["UNSEEN"]
        # Until threads exist, every email is its own thread.
        assert box["totalThreads"] == box["totalEmails"]
        assert box["unreadThreads"] == box["unreadEmails"]
    assert mailboxes["Inbox"]["totalEmails"] == 5 and mailboxes["Inbox"]["unreadEmails"] == 3


async def test_non_ascii_names_from_another_client(jmap: Jmap, dovecot: Dovecot) -> None:
    wanted = {"Пример", "日本語", "📬 Post"}
    with Witness(dovecot, jmap.username) as witness:
        for name in wanted:
            witness.create(mutf7(name))
        assert "&BB8EQAQ4BDwENQRA-" in witness.names()  # RFC 3501 5.1.3's own style
    names = set(await jmap.mailboxes())
    assert wanted <= names


async def test_hierarchy_and_levels_without_a_folder(jmap: Jmap, dovecot: Dovecot) -> None:
    with Witness(dovecot, jmap.username) as witness:
        witness.create("Work/Projects/2026")
    mailboxes = await jmap.mailboxes()
    work, projects = mailboxes["Work"], mailboxes["Work/Projects"]
    year = mailboxes["Work/Projects/2026"]
    assert year["name"] == "2026" and year["parentId"] == projects["id"]
    assert projects["parentId"] == work["id"] and work["parentId"] is None
    # "Work" exists only as a level of the hierarchy: it cannot hold mail.
    assert work["myRights"]["mayAddItems"] is False


async def test_ids_properties_and_not_found(jmap: Jmap) -> None:
    inbox = (await jmap.mailboxes())["Inbox"]
    result = await jmap.call(
        "Mailbox/get", ids=[inbox["id"], "nosuchid"], properties=["name", "role"]
    )
    assert result["list"] == [{"id": inbox["id"], "name": "Inbox", "role": "inbox"}]
    assert result["notFound"] == ["nosuchid"]
    assert result["state"]


async def test_unknown_property_is_invalid(jmap: Jmap) -> None:
    (response,) = await jmap.request(("Mailbox/get", {"properties": ["name", "colour"]}))
    assert response[0] == "error" and response[1]["type"] == "invalidArguments"
