"""The main Email/set paths on both upstreams: Dovecot (X-GUID ids) and Cyrus (RFC 8474
EMAILID/THREADID), checked on each server with a plain IMAP client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.translators.mailstate import Mail
from tests.translators.test_email_set import ids_by_key, mailbox_ids
from tests.translators.upstreams import Upstream, upstream

__all__ = ["upstream"]


@pytest.fixture
def mail(upstream: Upstream) -> Iterator[Mail]:
    client = Mail(upstream.server, upstream.user)
    yield client
    client.close()


async def test_flags_moves_creates_and_destroys(upstream: Upstream, mail: Mail) -> None:
    jmap = upstream.jmap
    for key in ("a", "b", "c"):
        mail.append("INBOX", key)
    ids = await ids_by_key(jmap)
    boxes = await mailbox_ids(jmap)
    threads = await jmap.call("Email/get", ids=list(ids.values()), properties=["threadId"])
    thread_of = {e["id"]: e["threadId"] for e in threads["list"]}

    result = await jmap.call(
        "Email/set",
        create={
            "d": {
                "mailboxIds": {boxes["Drafts"]: True},
                "keywords": {"$draft": True},
                "subject": "draft",
                "textBody": [{"partId": "t"}],
                "bodyValues": {"t": {"value": "text"}},
            }
        },
        update={
            ids["a"]: {"keywords": {"$seen": True, "$flagged": True}},
            ids["b"]: {"mailboxIds": {boxes["Archive"]: True}},
        },
        destroy=[ids["c"]],
    )

    assert result["updated"] == {ids["a"]: None, ids["b"]: None}
    assert result["destroyed"] == [ids["c"]]
    draft = result["created"]["d"]
    assert mail.folder("INBOX") == {"a": [{"\\Seen", "\\Flagged"}]}
    assert mail.folder("Archive") == {"b": [set()]}
    got = await jmap.call(
        "Email/get", ids=[ids["b"], draft["id"]], properties=["mailboxIds", "threadId", "size"]
    )
    moved, created = got["list"]
    assert moved["mailboxIds"] == {boxes["Archive"]: True}
    assert moved["threadId"] == thread_of[ids["b"]]
    assert created["mailboxIds"] == {boxes["Drafts"]: True}
    assert (created["threadId"], created["size"]) == (draft["threadId"], draft["size"])
