"""receivedAt on Email/set create and Email/import: refused where no IMAP server can store it,
and otherwise reported as the upstream stored it, on Dovecot and Cyrus.

Found with a plain client (APPEND with a date, then FETCH INTERNALDATE): both keep seconds
since 1970 in 32 bits. Dovecot stored 1969-12-31T23:59:59Z as 2038-01-19T03:14:08Z, Cyrus
refuses dates before 1970, takes 1970-01-01T00:00:00Z for "now" and wraps after
2106-02-07T06:28:15Z; Dovecot stores "now" for a date more than two hours ahead. The ground
truth of every test is the INTERNALDATE the server reports to the stdlib client.
"""

from __future__ import annotations

import imaplib
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest

from tests.jmapclient import Jmap
from tests.translators.upstreams import Upstream, imap, ok, upstream

__all__ = ["imap", "upstream"]  # fixtures

UNSTORABLE = [
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "1901-12-13T20:45:52Z",
    "0001-01-01T00:00:00Z",
    "2106-02-07T06:28:16Z",
    "9999-12-31T23:59:59Z",
]


def internal_date(imap: imaplib.IMAP4, subject: str) -> str:
    """The INTERNALDATE of the INBOX message with ``subject``, as a UTCDate."""
    ok(imap.select("INBOX", readonly=True))
    (uids,) = ok(imap.uid("SEARCH", "HEADER", "Subject", subject))
    (uid,) = uids.split()
    data = ok(imap.uid("FETCH", uid.decode(), "(INTERNALDATE)"))
    found = re.search(rb'INTERNALDATE "([^"]+)"', data[0])
    assert found is not None, data
    moment = datetime.strptime(found[1].decode().strip(), "%d-%b-%Y %H:%M:%S %z")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def count(imap: imaplib.IMAP4) -> int:
    ok(imap.select("INBOX", readonly=True))
    return len(ok(imap.uid("SEARCH", "ALL"))[0].split())


async def inbox(jmap: Jmap) -> str:
    return str((await jmap.mailboxes())["Inbox"]["id"])


def draft(box: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "mailboxIds": {box: True},
        "subject": subject,
        "bodyValues": {"b": {"value": "hello"}},
        "textBody": [{"partId": "b", "type": "text/plain"}],
        **extra,
    }


def raw_message(subject: str, received: str | None = None) -> bytes:
    msg = EmailMessage()
    if received is not None:
        msg["Received"] = f"from a.example by b.example; {received}"
    msg["From"] = "a@example.org"
    msg["Subject"] = subject
    msg.set_content("hello\n")
    return msg.as_bytes(policy=policy.SMTP)  # Cyrus refuses bare line feeds


async def test_dates_no_server_stores_are_refused(upstream: Upstream, imap: imaplib.IMAP4) -> None:
    jmap = upstream.jmap
    box = await inbox(jmap)
    blob_id = await jmap.upload(raw_message("imported"), "message/rfc822")
    created = await jmap.call(
        "Email/set",
        create={f"c{i}": draft(box, f"c{i}", receivedAt=d) for i, d in enumerate(UNSTORABLE)},
    )
    imported = await jmap.call(
        "Email/import",
        emails={
            f"i{i}": {"blobId": blob_id, "mailboxIds": {box: True}, "receivedAt": d}
            for i, d in enumerate(UNSTORABLE)
        },
    )
    for result, kind in ((created, "notCreated"), (imported, "notCreated")):
        assert result["created"] is None
        assert len(result[kind]) == len(UNSTORABLE)
        for error in result[kind].values():
            assert error["type"] == "invalidProperties" and error["properties"] == ["receivedAt"]
    assert count(imap) == 0


@pytest.mark.parametrize(
    "asked",
    [
        "1970-01-01T00:00:01Z",
        "2021-03-04T05:06:07Z",
        "2021-03-04T05:06:07.5Z",
        "2100-01-01T00:00:00Z",
    ],
)
async def test_what_is_stored_is_what_is_reported(
    upstream: Upstream, imap: imaplib.IMAP4, asked: str
) -> None:
    jmap = upstream.jmap
    box = await inbox(jmap)
    blob_id = await jmap.upload(raw_message("imported"), "message/rfc822")
    created = (await jmap.call("Email/set", create={"c": draft(box, "created", receivedAt=asked)}))[
        "created"
    ]["c"]
    imported = (
        await jmap.call(
            "Email/import",
            emails={"i": {"blobId": blob_id, "mailboxIds": {box: True}, "receivedAt": asked}},
        )
    )["created"]["i"]
    for subject, result in (("created", created), ("imported", imported)):
        stored = internal_date(imap, subject)
        # Reported only where it is not what the client sent (RFC 8620 5.3 sends back what
        # the server decided): a fraction of a second is dropped, and Dovecot stores "now"
        # for a date far ahead.
        assert result.get("receivedAt", asked) == stored
        assert ("receivedAt" in result) == (stored != asked)
        got = await jmap.call("Email/get", ids=[result["id"]], properties=["receivedAt"])
        assert got["list"][0]["receivedAt"] == stored
    if asked.startswith(("1970", "2021-03-04T05:06:07Z")):
        assert internal_date(imap, "created") == asked


async def test_import_defaults_to_a_storable_received_date(
    upstream: Upstream, imap: imaplib.IMAP4
) -> None:
    jmap = upstream.jmap
    box = await inbox(jmap)
    dated = await jmap.upload(
        raw_message("dated", "Thu, 04 Mar 2021 06:06:07 +0100"), "message/rfc822"
    )
    forged = await jmap.upload(
        raw_message("forged", "Wed, 31 Dec 1969 23:00:00 +0000"), "message/rfc822"
    )
    created = (
        await jmap.call(
            "Email/import",
            emails={
                "dated": {"blobId": dated, "mailboxIds": {box: True}},
                "forged": {"blobId": forged, "mailboxIds": {box: True}},
            },
        )
    )["created"]
    assert created["dated"]["receivedAt"] == internal_date(imap, "dated") == "2021-03-04T05:06:07Z"
    # A Received date no server can store leaves the server's own time, reported as stored.
    stored = internal_date(imap, "forged")
    assert created["forged"]["receivedAt"] == stored and stored.startswith("20")
    created_now = (await jmap.call("Email/set", create={"c": draft(box, "now")}))["created"]["c"]
    assert created_now["receivedAt"] == internal_date(imap, "now")
