"""Email/set and Email/import against a Dovecot with a quota: the refusals the upstream answers
with a response code become the SetError gateway.translators.upstream_refusals says, and the
mail stays as it was (read back with a plain IMAP client).

Dovecot answers ``NO [OVERQUOTA]`` to an APPEND or COPY past the message-count rule, and
``NO [LIMIT]`` to an APPEND larger than quota_max_mail_size (../shared/harness/README.md 1.2).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.conftest import fresh_jmap, gateway_settings, running_gateway, serving
from tests.jmapclient import Jmap
from tests.servers import Dovecot, make_data_dir
from tests.translators.mailstate import Mail, message
from tests.translators.test_email_set import mailbox_ids

MESSAGES = 2
MAX_MAIL_SIZE = 16_384


@pytest.fixture(scope="module")
def quota_dovecot() -> Iterator[Dovecot]:
    yield from serving(Dovecot(make_data_dir("jg-dovecot-"), quota=(MESSAGES, MAX_MAIL_SIZE)))


@pytest.fixture
async def jmap(quota_dovecot: Dovecot, redis_url: str) -> AsyncIterator[Jmap]:
    settings = gateway_settings(quota_dovecot.url, redis_url)
    async with (
        running_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield await fresh_jmap(quota_dovecot, http)


@pytest.fixture
def mail(quota_dovecot: Dovecot, jmap: Jmap) -> Iterator[Mail]:
    client = Mail(quota_dovecot, jmap.username)
    yield client
    client.close()


def plain(mailbox_id: str, subject: str, body: str = "hello\n") -> dict[str, object]:
    return {
        "mailboxIds": {mailbox_id: True},
        "from": [{"email": "ann@example.org"}],
        "subject": subject,
        "bodyValues": {"t": {"value": body}},
        "textBody": [{"partId": "t", "type": "text/plain"}],
    }


async def test_create_past_the_quota_is_over_quota(jmap: Jmap, mail: Mail) -> None:
    mail.append("INBOX", "a")
    mail.append("INBOX", "b")
    inbox = (await mailbox_ids(jmap))["INBOX"]
    result = await jmap.call("Email/set", create={"c": plain(inbox, "one too many")})
    assert result["notCreated"] == {
        "c": {"type": "overQuota", "description": "the mail server's quota is exhausted"}
    }
    assert set(mail.folder("INBOX")) == {"a", "b"}


async def test_import_past_the_quota_is_over_quota(jmap: Jmap, mail: Mail) -> None:
    mail.append("INBOX", "a")
    mail.append("INBOX", "b")
    inbox = (await mailbox_ids(jmap))["INBOX"]
    blob_id = await jmap.upload(message("c"), "message/rfc822")
    result = await jmap.call(
        "Email/import", emails={"c": {"blobId": blob_id, "mailboxIds": {inbox: True}}}
    )
    assert result["notCreated"] == {
        "c": {"type": "overQuota", "description": "the mail server's quota is exhausted"}
    }
    assert set(mail.folder("INBOX")) == {"a", "b"}


async def test_copy_past_the_quota_is_over_quota(jmap: Jmap, mail: Mail) -> None:
    """Adding a mailbox COPYs the message upstream: that counts against the quota."""
    mail.create("Other")
    mail.append("INBOX", "a")
    mail.append("INBOX", "b")
    boxes = await mailbox_ids(jmap)
    found = await jmap.call("Email/query", filter={"inMailbox": boxes["INBOX"]})
    email_id = found["ids"][0]
    result = await jmap.call("Email/set", update={email_id: {f"mailboxIds/{boxes['Other']}": True}})
    assert result["notUpdated"] == {
        email_id: {"type": "overQuota", "description": "the mail server's quota is exhausted"}
    }
    assert set(mail.folder("INBOX")) == {"a", "b"}
    assert mail.folder("Other") == {}


async def test_create_past_the_size_limit_is_too_large(jmap: Jmap, mail: Mail) -> None:
    """[LIMIT] on an APPEND is a limit on the message: tooLarge (not overQuota, which the
    same code means for a mailbox, nor tooManyKeywords, which it means for a STORE)."""
    inbox = (await mailbox_ids(jmap))["INBOX"]
    body = "x" * (2 * MAX_MAIL_SIZE) + "\n"
    result = await jmap.call("Email/set", create={"c": plain(inbox, "large", body)})
    assert result["notCreated"] == {
        "c": {"type": "tooLarge", "description": "the mail server's limit is reached"}
    }
    assert mail.folder("INBOX") == {}
