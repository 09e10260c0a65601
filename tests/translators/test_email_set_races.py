"""Email/set under races and stale indexes: duplicates after a lost COPY answer during a
create, expunges of messages the client did not name, UIDs of another UIDVALIDITY, plans
from an index the gateway trusts without asking the upstream, changes by other clients
between the plan and the upstream work, and #creationId references to mailboxes created
earlier in the same request.

Ground truth is read on the server with a plain IMAP client (tests.translators.mailstate).
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from gateway.imap.errors import CommandFailed
from gateway.sync import emails as email_sync
from gateway.translators.email import set as email_set_module
from tests.conftest import gateway_settings, running_gateway
from tests.faultproxy import FaultProxy
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import Mail, ok
from tests.translators.proxied import jmap, proxy
from tests.translators.test_email_set import ids_by_key, mailbox_ids

TRUSTING = 3600

__all__ = ["jmap", "proxy"]


@pytest.fixture
async def trusting(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Jmap]:
    """A gateway that trusts its index for an hour (production default: one second)."""
    settings = gateway_settings(dovecot.url, redis_url, sync_interval_seconds=TRUSTING)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        user = dovecot.fresh_user()
        yield await Jmap(http, user, dovecot.users[user]).start()


@pytest.fixture
def mail(dovecot: Dovecot, jmap: Jmap) -> Iterator[Mail]:
    client = Mail(dovecot, jmap.username)
    yield client
    client.close()


@pytest.fixture
def other_client(dovecot: Dovecot, trusting: Jmap) -> Iterator[Mail]:
    """A plain IMAP client of the trusting gateway's user."""
    client = Mail(dovecot, trusting.username)
    yield client
    client.close()


def draft(mailbox_ids: dict[str, bool], subject: str) -> dict[str, Any]:
    return {
        "mailboxIds": mailbox_ids,
        "subject": subject,
        "textBody": [{"partId": "t", "type": "text/plain"}],
        "bodyValues": {"t": {"value": "text"}},
    }


def subjects(mail: Mail, folder: str) -> list[str]:
    ok(mail.imap.select(f'"{folder}"', readonly=True))
    data = ok(mail.imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    return sorted(
        bytes(item[1]).decode().strip().removeprefix("Subject: ")
        for item in data
        if isinstance(item, tuple)
    )


async def test_create_copy_answer_lost_is_not_copied_twice(
    jmap: Jmap, mail: Mail, proxy: FaultProxy
) -> None:
    """APPEND to Drafts, COPY to Archive done but its answer lost: the retry finds the
    APPENDed message and must not COPY it to Archive a second time."""
    boxes = await mailbox_ids(jmap)
    proxy.cut(rb"UID COPY", when="after")

    result = await jmap.call(
        "Email/set",
        create={"d": draft({boxes["Drafts"]: True, boxes["Archive"]: True}, "twice?")},
    )

    assert proxy.cuts == 1
    assert "d" in (result["created"] or {}), result
    assert subjects(mail, "Drafts") == ["twice?"]
    assert subjects(mail, "Archive") == ["twice?"]


async def test_keyword_update_does_not_expunge_a_deleted_copy_elsewhere(
    jmap: Jmap, mail: Mail
) -> None:
    """A copy another IMAP client flagged \\Deleted (and may still undelete) is not the
    JMAP client's to expunge when it only marks the Email read."""
    mail.append("INBOX", "a")
    mail.copy("INBOX", "a", "Archive")
    uid = mail.uids("Archive", "a")[0]
    ok(mail.imap.select('"Archive"'))
    ok(mail.imap.uid("STORE", uid, "+FLAGS", "(\\Deleted)"))
    ids = await ids_by_key(jmap)

    result = await jmap.call("Email/set", update={ids["a"]: {"keywords/$seen": True}})

    assert result["updated"] == {ids["a"]: None}
    assert mail.folder("INBOX") == {"a": [{"\\Seen"}]}
    assert mail.folder("Archive") == {"a": [{"\\Deleted"}]}


async def test_uids_of_an_older_uidvalidity_are_never_expunged(
    dovecot: Dovecot, jmap: Jmap, mail: Mail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Work gets a new UIDVALIDITY and keeps its identity (here: Dovecot's folder GUID put
    back with doveadm; on servers without folder ids, the name); UID 1 is now another
    message. The email catch-up of Work is refused once (a tagged NO, which the sync handles
    by skipping the folder), so the mailbox index has Work's new UIDVALIDITY while the email
    index still holds the old UIDs: destroying the old Email must not expunge the new message
    that has its UID. carry_out checks UIDVALIDITY against the mailbox record, not against
    the folder mark the UIDs were indexed under."""
    mail.create("Work")
    mail.append("Work", "old")
    ids = await ids_by_key(jmap)
    status = ok(mail.imap.status('"Work"', "(X-GUID)"))[0].decode()
    guid = status.split("X-GUID ")[1].rstrip(")")
    ok(mail.imap.select("INBOX"))
    ok(mail.imap.delete('"Work"'))
    mail.create("Work")
    mail.append("Work", "new")
    subprocess.run(
        [
            *("doveadm", "-c", str(dovecot.config), "mailbox", "update"),
            *("-u", jmap.username, "--mailbox-guid", guid, "Work"),
        ],
        check=True,
        capture_output=True,
    )
    assert mail.uids("Work", "new") == ["1"]
    visit = email_sync._FolderVisit.run

    async def refused(self: Any, record: Any, mark: Any) -> None:
        if record.name == "Work":
            raise CommandFailed("NO", "INUSE", "try again")
        await visit(self, record, mark)

    monkeypatch.setattr(email_sync._FolderVisit, "run", refused)

    await jmap.request(("Email/set", {"destroy": [ids["old"]]}))

    assert mail.folder("Work") == {"new": [set()]}


async def test_adding_a_mailbox_never_makes_a_second_copy_there(
    trusting: Jmap, other_client: Mail
) -> None:
    """Another IMAP client copied the message to Archive after the index last looked; the
    client then adds Archive. "The plan never copies to a folder that already holds the
    Email", but the first attempt is planned from the trusted index."""
    mail = other_client
    mail.append("INBOX", "a")
    ids = await ids_by_key(trusting)
    boxes = await mailbox_ids(trusting)
    mail.copy("INBOX", "a", "Archive")

    result = await trusting.call(
        "Email/set", update={ids["a"]: {f"mailboxIds/{boxes['Archive']}": True}}
    )

    assert result["updated"] == {ids["a"]: None}
    assert mail.folder("Archive") == {"a": [set()]}


async def test_keyword_removed_is_removed_from_every_copy_or_not_reported_done(
    trusting: Jmap, other_client: Mail
) -> None:
    """keywords are the union of the copies' flags: "$seen: null" reported done while a copy
    the trusted index did not know still has \\Seen leaves the Email $seen."""
    mail = other_client
    mail.append("INBOX", "a", flags="\\Seen")
    ids = await ids_by_key(trusting)
    mail.copy("INBOX", "a", "Archive")

    result = await trusting.call("Email/set", update={ids["a"]: {"keywords/$seen": None}})

    if result["updated"] == {ids["a"]: None}:
        assert mail.folder("INBOX") == {"a": [set()]}
        assert mail.folder("Archive") == {"a": [set()]}


async def test_mailbox_created_earlier_in_the_request_by_creation_id(
    jmap: Jmap, mail: Mail
) -> None:
    mail.append("INBOX", "a")
    ids = await ids_by_key(jmap)

    responses = await jmap.request(
        ("Mailbox/set", {"create": {"box": {"name": "Projects", "parentId": None}}}),
        (
            "Email/set",
            {
                "create": {"d": draft({"#box": True}, "filed")},
                "update": {ids["a"]: {"mailboxIds/#box": True}},
            },
        ),
    )

    result = responses[1][1]
    assert responses[1][0] == "Email/set", responses
    assert "d" in (result["created"] or {}), result
    assert result["updated"] == {ids["a"]: None}, result
    assert subjects(mail, "Projects") == ["filed", "message a"]
    assert mail.folder("INBOX") == {"a": [set()]}


async def test_flags_written_from_store_answers_never_undo_a_newer_catch_up(
    dovecot: Dovecot, redis_url: str, jmap: Jmap, mail: Mail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the STORE's answer and _follow's direct write (IndexWriter.set_flags, which
    does not look at the folder mark), another IMAP client flags the message and another
    replica catches up, moving the folder mark past both changes. The late direct write
    puts the STORE's older flags back; no later catch-up revisits the folder, so the index
    stays wrong until the message changes again."""
    mail.append("INBOX", "a")
    ids = await ids_by_key(jmap)
    settings = gateway_settings(dovecot.url, redis_url)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        other = await Jmap(http, jmap.username, dovecot.users[jmap.username]).start()
        original = email_set_module._follow

        async def racing(*args: Any) -> None:
            uid = mail.uids("INBOX", "a")[0]
            ok(mail.imap.select("INBOX"))
            ok(mail.imap.uid("STORE", uid, "+FLAGS", "(\\Flagged)"))
            await other.call("Email/get", ids=[])  # the other replica catches up
            await original(*args)

        monkeypatch.setattr(email_set_module, "_follow", racing)
        result = await jmap.call("Email/set", update={ids["a"]: {"keywords/$seen": True}})
        monkeypatch.setattr(email_set_module, "_follow", original)

        assert result["updated"] == {ids["a"]: None}
        assert mail.folder("INBOX") == {"a": [{"\\Seen", "\\Flagged"}]}
        for client in (jmap, other):
            got = await client.call("Email/get", ids=[ids["a"]], properties=["keywords"])
            assert got["list"][0]["keywords"] == {"$seen": True, "$flagged": True}


async def test_a_stored_draft_is_reported_even_if_the_read_back_breaks(
    jmap: Jmap, mail: Mail, proxy: FaultProxy
) -> None:
    """The APPEND succeeded; the catch-up that reads the new Email back loses its
    connection. The method must not end in a method error (the client would retry the
    create and store it twice): the draft is in created, or at least in notCreated."""
    boxes = await mailbox_ids(jmap)
    proxy.cut(rb"EXAMINE", when="before")  # the read-back's visit of Drafts

    (response,) = await jmap.request(
        ("Email/set", {"create": {"d": draft({boxes["Drafts"]: True}, "stored")}})
    )

    assert proxy.cuts == 1
    assert subjects(mail, "Drafts") == ["stored"]
    assert response[0] == "Email/set", response


async def test_removing_a_mailbox_never_removes_the_last_copy(
    trusting: Jmap, other_client: Mail
) -> None:
    """The Email is in INBOX and Archive; another IMAP client deletes the INBOX copy after
    the index last looked. The client removes Archive (keeping INBOX, as far as it knows).
    Planned from the trusted index, the Archive copy is expunged in the first pass, "in any
    order", without checking that a kept copy still exists: the message ends in no folder.
    It must stay in Archive (the update would leave the Email in no mailbox)."""
    mail = other_client
    mail.append("INBOX", "a")
    mail.copy("INBOX", "a", "Archive")
    ids = await ids_by_key(trusting)
    boxes = await mailbox_ids(trusting)
    uid = mail.uids("INBOX", "a")[0]
    ok(mail.imap.select("INBOX"))
    ok(mail.imap.uid("STORE", uid, "+FLAGS", "(\\Deleted)"))
    ok(mail.imap.expunge())

    result = await trusting.call(
        "Email/set", update={ids["a"]: {f"mailboxIds/{boxes['Archive']}": None}}
    )

    assert mail.folder("INBOX") == {}
    assert mail.folder("Archive") == {"a": [set()]}, (
        result["updated"],
        result["notUpdated"],
    )


async def test_a_move_that_moved_nothing_expunges_nothing(
    trusting: Jmap, other_client: Mail
) -> None:
    """The Email is in INBOX and Archive; another IMAP client deletes the copy the plan will
    MOVE (the anchor: the first removed mailbox by id). The client moves the Email to Junk.
    UID MOVE of a UID no longer there answers OK without COPYUID, and the "after" expunge
    of the other copy runs anyway: the message ends in no folder."""
    mail = other_client
    mail.append("INBOX", "a")
    mail.copy("INBOX", "a", "Archive")
    ids = await ids_by_key(trusting)
    boxes = await mailbox_ids(trusting)
    anchor = min(["INBOX", "Archive"], key=lambda name: boxes[name])
    uid = mail.uids(anchor, "a")[0]
    ok(mail.imap.select(f'"{anchor}"'))
    ok(mail.imap.uid("STORE", uid, "+FLAGS", "(\\Deleted)"))
    ok(mail.imap.expunge())

    result = await trusting.call(
        "Email/set", update={ids["a"]: {"mailboxIds": {boxes["Junk"]: True}}}
    )

    found = {name: mail.folder(name) for name in ("INBOX", "Archive", "Junk")}
    assert {"a": [set()]} in found.values(), (
        found,
        result["updated"],
        result["notUpdated"],
    )


async def test_a_copy_gone_between_plan_and_move_is_never_left_nowhere(
    trusting: Jmap, other_client: Mail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another client expunges the copy to be MOVEd after the plan was made from a fresh
    catch-up: UID MOVE answers OK without COPYUID for it, and the other copy must not be
    expunged after it."""
    mail = other_client
    mail.append("INBOX", "a")
    mail.copy("INBOX", "a", "Archive")
    ids = await ids_by_key(trusting)
    boxes = await mailbox_ids(trusting)
    anchor = min(["INBOX", "Archive"], key=lambda name: boxes[name])
    original = email_set_module.carry_out

    async def racing(*args: Any) -> None:
        uid = mail.uids(anchor, "a")[0]
        ok(mail.imap.select(f'"{anchor}"'))
        ok(mail.imap.uid("STORE", uid, "+FLAGS", "(\\Deleted)"))
        ok(mail.imap.expunge())
        monkeypatch.setattr(email_set_module, "carry_out", original)
        await original(*args)

    monkeypatch.setattr(email_set_module, "carry_out", racing)
    result = await trusting.call(
        "Email/set", update={ids["a"]: {"mailboxIds": {boxes["Junk"]: True}}}
    )

    found = {name: mail.folder(name) for name in ("INBOX", "Archive", "Junk")}
    assert sorted(len(v.get("a", [])) for v in found.values()) == [0, 0, 1], found
    assert result["updated"] == {ids["a"]: None}
    assert found["Junk"] == {"a": [set()]}
