"""The Email, Mailbox and Thread property tables say what RFC 8621 says of each property.

Ground truth is the RFC's own text, copied here by hand: the "(immutable; server-set)" and
"(default: ...)" notes of RFC 8621 2, 3 and 4.1, and the default property list of 4.2.
Email/set create refuses through gateway.mime.compose, which cannot import translators;
the last test checks that it refuses exactly what the table calls server-set.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.mime.compose import ComposeError, compose
from gateway.translators.email.properties import PROPERTIES as EMAIL
from gateway.translators.email.thread import PROPERTIES as THREAD
from gateway.translators.mailbox.objects import PROPERTIES as MAILBOX

# RFC 8621 4.1.1-4.1.4, the properties marked server-set.
EMAIL_SERVER_SET = {"id", "blobId", "threadId", "size", "hasAttachment", "preview"}
# RFC 8621 4.1: everything is immutable except mailboxIds and keywords.
EMAIL_MUTABLE = {"mailboxIds", "keywords"}
# RFC 8621 4.2: "If omitted, this defaults to: ..." (the properties argument of Email/get).
EMAIL_DEFAULTS = [
    "id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "messageId",
    "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo", "subject",
    "sentAt", "hasAttachment", "preview", "bodyValues", "textBody", "htmlBody", "attachments",
]  # fmt: skip
# RFC 8621 2: the Mailbox properties a client may set.
MAILBOX_SETTABLE = {"name", "parentId", "role", "sortOrder", "isSubscribed"}


def test_email_table() -> None:
    assert EMAIL.server_set == EMAIL_SERVER_SET
    assert EMAIL.mutable == EMAIL_MUTABLE
    assert list(EMAIL.defaults) == EMAIL_DEFAULTS
    assert EMAIL.names - set(EMAIL_DEFAULTS) == {"headers", "bodyStructure"}
    assert EMAIL.always == ("id",)


def test_mailbox_table() -> None:
    assert MAILBOX.names - MAILBOX.server_set == MAILBOX_SETTABLE
    assert MAILBOX.mutable == MAILBOX_SETTABLE
    assert MAILBOX.always == ("id",)
    # RFC 8621 2.1: Mailbox/get's default is all properties.
    assert set(MAILBOX.defaults) == MAILBOX.names


def test_thread_table() -> None:
    assert THREAD.names == {"id", "emailIds"} == THREAD.server_set
    assert THREAD.defaults == ("id", "emailIds")


@pytest.mark.parametrize("prop", sorted(EMAIL.names - EMAIL.mutable - {"receivedAt"}))
def test_email_create_refuses_the_server_set_ones(prop: str) -> None:
    """A create giving a server-set property is refused as such; the other properties of
    the table are content compose reads (or the headers form it refuses for its own reason)."""
    email = {"from": [{"email": "a@example.com"}], prop: None}
    try:
        compose(
            email,
            {},
            now=datetime(2024, 1, 1, tzinfo=UTC),
            domain="example.com",
            max_attachments_size=1 << 20,
        )
    except ComposeError as error:
        refused_as_server_set = "server-set" in error.description
    else:
        refused_as_server_set = False
    assert refused_as_server_set == (prop in EMAIL.server_set), prop
