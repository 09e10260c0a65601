"""Mailbox methods (RFC 8621 2): IMAP folders as JMAP Mailboxes."""

from __future__ import annotations

from gateway.env import RequestEnv
from gateway.jmap.capabilities import MAIL
from gateway.jmap.dispatch import Method
from gateway.translators.mailbox.get import mailbox_changes, mailbox_get
from gateway.translators.mailbox.query import mailbox_query, mailbox_query_changes
from gateway.translators.mailbox.set import mailbox_set
from gateway.translators.spec import Spec

METHODS: tuple[Method[RequestEnv], ...] = (
    Method("Mailbox/get", MAIL, mailbox_get, writes=False),
    Method("Mailbox/changes", MAIL, mailbox_changes, writes=False),
    Method("Mailbox/query", MAIL, mailbox_query, writes=False),
    Method("Mailbox/queryChanges", MAIL, mailbox_query_changes, writes=False),
    Method("Mailbox/set", MAIL, mailbox_set, writes=True),
)

# The mail capability's objects are declared once, by the email package.
SPEC = Spec(MAIL, METHODS)
