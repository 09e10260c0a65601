"""Mailbox methods (RFC 8621 2): IMAP folders as JMAP Mailboxes."""

from __future__ import annotations

from gateway.env import RequestEnv
from gateway.jmap.capabilities import MAIL
from gateway.jmap.dispatch import MethodRegistry
from gateway.translators.mailbox.get import mailbox_changes, mailbox_get
from gateway.translators.mailbox.set import mailbox_set


def register(registry: MethodRegistry[RequestEnv]) -> None:
    registry.method("Mailbox/get", MAIL)(mailbox_get)
    registry.method("Mailbox/changes", MAIL)(mailbox_changes)
    registry.method("Mailbox/set", MAIL, writes=True)(mailbox_set)
