"""Email/set and Email/import when the upstream connection breaks half way.

The gateway reaches Dovecot through tests.faultproxy, which cuts the connection at a chosen
command: before the server sees it, or after the server did it but before the gateway hears
so. Afterwards the folders are read with a plain IMAP client: every message is where the
client asked or where it was, exactly once, and the response says which.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.faultproxy import FaultProxy
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import Mail, message
from tests.translators.proxied import jmap, proxy
from tests.translators.test_email_set import ids_by_key, mailbox_ids

__all__ = ["jmap", "proxy"]


@pytest.fixture
def mail(dovecot: Dovecot, jmap: Jmap) -> Iterator[Mail]:
    client = Mail(dovecot, jmap.username)
    yield client
    client.close()


async def update(jmap: Jmap, email_id: str, patch: dict[str, Any]) -> dict[str, Any]:
    return await jmap.call("Email/set", update={email_id: patch})


@pytest.mark.parametrize("when", ["before", "after"])
async def test_move_cut_off(jmap: Jmap, mail: Mail, proxy: FaultProxy, when: str) -> None:
    mail.append("INBOX", "a", flags="\\Seen")
    ids = await ids_by_key(jmap)
    boxes = await mailbox_ids(jmap)
    proxy.cut(rb"UID MOVE", when=when)  # type: ignore[arg-type]

    result = await update(jmap, ids["a"], {"mailboxIds": {boxes["Archive"]: True}})

    assert proxy.cuts == 1
    assert result["updated"] == {ids["a"]: None}
    assert mail.folder("INBOX") == {}
    assert mail.folder("Archive") == {"a": [{"\\Seen"}]}
    got = await jmap.call("Email/get", ids=[ids["a"]], properties=["mailboxIds"])
    assert got["list"][0]["mailboxIds"] == {boxes["Archive"]: True}


async def test_copy_answer_lost_is_not_copied_twice(
    jmap: Jmap, mail: Mail, proxy: FaultProxy
) -> None:
    mail.append("INBOX", "a")
    ids = await ids_by_key(jmap)
    boxes = await mailbox_ids(jmap)
    proxy.cut(rb"UID COPY", when="after")

    result = await update(jmap, ids["a"], {f"mailboxIds/{boxes['Archive']}": True})

    assert proxy.cuts == 1
    assert result["updated"] == {ids["a"]: None}
    assert mail.folder("INBOX") == {"a": [set()]}
    assert mail.folder("Archive") == {"a": [set()]}


async def test_cut_between_copy_and_move_finishes_the_move(
    jmap: Jmap, mail: Mail, proxy: FaultProxy
) -> None:
    mail.append("INBOX", "a")
    ids = await ids_by_key(jmap)
    boxes = await mailbox_ids(jmap)
    proxy.cut(rb"UID MOVE", when="before")

    patch = {"mailboxIds": {boxes["Archive"]: True, boxes["Junk"]: True}}
    result = await update(jmap, ids["a"], patch)

    assert proxy.cuts == 1
    assert result["updated"] == {ids["a"]: None}
    assert mail.folder("INBOX") == {}
    assert mail.folder("Archive") == {"a": [set()]}
    assert mail.folder("Junk") == {"a": [set()]}


async def test_cut_between_store_and_expunge_leaves_no_hidden_copy(
    jmap: Jmap, mail: Mail, proxy: FaultProxy
) -> None:
    mail.append("INBOX", "a")
    mail.copy("INBOX", "a", "Archive")
    ids = await ids_by_key(jmap)
    boxes = await mailbox_ids(jmap)
    proxy.cut(rb"UID EXPUNGE", when="before")

    result = await update(jmap, ids["a"], {f"mailboxIds/{boxes['INBOX']}": None})

    assert proxy.cuts == 1
    assert result["updated"] == {ids["a"]: None}
    assert mail.folder("INBOX") == {}
    assert mail.folder("Archive") == {"a": [set()]}


@pytest.mark.parametrize("when", ["before", "after"])
async def test_destroy_cut_off(jmap: Jmap, mail: Mail, proxy: FaultProxy, when: str) -> None:
    mail.append("INBOX", "a")
    mail.append("INBOX", "b")
    ids = await ids_by_key(jmap)
    proxy.cut(rb"UID EXPUNGE", when=when)  # type: ignore[arg-type]

    result = await jmap.call("Email/set", destroy=[ids["a"]])

    assert proxy.cuts == 1
    assert result["destroyed"] == [ids["a"]]
    assert mail.folder("INBOX") == {"b": [set()]}


async def test_mark_read_answer_lost(jmap: Jmap, mail: Mail, proxy: FaultProxy) -> None:
    mail.append("INBOX", "a")
    ids = await ids_by_key(jmap)
    proxy.cut(rb"UID STORE .*\\Seen", when="after")

    result = await update(jmap, ids["a"], {"keywords/$seen": True})

    assert proxy.cuts == 1
    assert result["updated"] == {ids["a"]: None}
    assert mail.folder("INBOX") == {"a": [{"\\Seen"}]}
    got = await jmap.call("Email/get", ids=[ids["a"]], properties=["keywords"])
    assert got["list"][0]["keywords"] == {"$seen": True}


async def test_upstream_failing_every_time_reports_and_keeps_the_mail(
    jmap: Jmap, mail: Mail, proxy: FaultProxy
) -> None:
    mail.append("INBOX", "a")
    ids = await ids_by_key(jmap)
    boxes = await mailbox_ids(jmap)
    proxy.cut(rb"UID MOVE", when="before", times=5)

    result = await update(jmap, ids["a"], {"mailboxIds": {boxes["Archive"]: True}})

    assert result["updated"] is None
    assert result["notUpdated"][ids["a"]]["type"] == "serverFail"
    assert mail.folder("INBOX") == {"a": [set()]}
    assert mail.folder("Archive") == {}
    got = await jmap.call("Email/get", ids=[ids["a"]], properties=["mailboxIds"])
    assert got["list"][0]["mailboxIds"] == {boxes["INBOX"]: True}


async def test_import_answer_lost_is_stored_once(jmap: Jmap, mail: Mail, proxy: FaultProxy) -> None:
    boxes = await mailbox_ids(jmap)
    raw = message("imported")
    blob_id = await jmap.upload(raw, "message/rfc822")
    proxy.cut(rb"APPEND", when="after")

    result = await jmap.call(
        "Email/import", emails={"k1": {"blobId": blob_id, "mailboxIds": {boxes["Archive"]: True}}}
    )

    assert proxy.cuts == 1
    created = result["created"]["k1"]
    assert mail.folder("Archive") == {"imported": [set()]}
    assert mail.raw("Archive", "imported") == raw
    assert created["size"] == len(raw)
