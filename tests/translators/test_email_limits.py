"""The limits the Session advertises for mail are the ones Email/set and Email/import enforce
(RFC 8621 1.3.1, RFC 8620 2)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import MAIL, Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import Mail
from tests.translators.test_email_set import ids_by_key, mailbox_ids

LIMITS = {
    "max_mailboxes_per_email": 2,
    "max_size_attachments_per_email": 1000,
    "max_objects_in_set": 3,
}


@pytest.fixture
async def jmap(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Jmap]:
    settings = gateway_settings(dovecot.url, redis_url, **LIMITS)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        user = dovecot.fresh_user()
        yield await Jmap(http, user, dovecot.users[user]).start()


async def test_advertised_limits_are_enforced(dovecot: Dovecot, jmap: Jmap) -> None:
    session = (await jmap.http.get("/jmap/session", auth=jmap.auth)).json()
    mail_caps = session["accounts"][jmap.account_id]["accountCapabilities"][MAIL]
    assert mail_caps["maxMailboxesPerEmail"] == 2
    assert mail_caps["maxSizeAttachmentsPerEmail"] == 1000
    assert mail_caps["mayCreateTopLevelMailbox"] is True
    assert "receivedAt" in mail_caps["emailQuerySortOptions"]
    assert session["capabilities"]["urn:ietf:params:jmap:core"]["maxObjectsInSet"] == 3

    mail = Mail(dovecot, jmap.username)
    mail.append("INBOX", "a")
    ids = await ids_by_key(jmap)
    boxes = await mailbox_ids(jmap)
    three = {boxes[name]: True for name in ("INBOX", "Archive", "Junk")}

    updated = await jmap.call("Email/set", update={ids["a"]: {"mailboxIds": three}})
    assert updated["notUpdated"][ids["a"]]["type"] == "tooManyMailboxes"
    two = {boxes["INBOX"]: True, boxes["Archive"]: True}
    assert (await jmap.call("Email/set", update={ids["a"]: {"mailboxIds": two}}))["updated"]

    big = await jmap.upload(b"x" * 1001)
    body = {"subject": "s", "textBody": [{"partId": "t"}], "bodyValues": {"t": {"value": "v"}}}
    created = await jmap.call(
        "Email/set",
        create={
            "many": {**body, "mailboxIds": three},
            "large": {
                **body,
                "mailboxIds": {boxes["Drafts"]: True},
                "attachments": [{"blobId": big, "type": "application/octet-stream"}],
            },
        },
    )
    assert created["notCreated"]["many"]["type"] == "tooManyMailboxes"
    assert created["notCreated"]["large"]["type"] == "tooLarge"
    assert mail.folder("Drafts") == {} and mail.folder("Junk") == {}

    (too_many,) = await jmap.request(
        ("Email/set", {"destroy": ["e1", "e2", "e3", "e4"]}),
    )
    assert too_many[0] == "error" and too_many[1]["type"] == "requestTooLarge"
    mail.close()
