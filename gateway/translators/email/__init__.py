"""Email and Thread methods (RFC 8621 3, 4): IMAP messages as JMAP Emails and Threads."""

from __future__ import annotations

from gateway.config import Settings
from gateway.env import RequestEnv
from gateway.jmap.capabilities import MAIL
from gateway.jmap.dispatch import Method
from gateway.jmap.protocol import JsonObject
from gateway.translators.email.copy import email_copy
from gateway.translators.email.filtering import SORTS
from gateway.translators.email.get import email_changes, email_get
from gateway.translators.email.importer import email_import
from gateway.translators.email.parse import email_parse
from gateway.translators.email.query import email_query, email_query_changes
from gateway.translators.email.set import email_set
from gateway.translators.email.snippet import search_snippet_get
from gateway.translators.email.thread import thread_changes, thread_get
from gateway.translators.mailbox.set import MAX_NAME_OCTETS
from gateway.translators.spec import Capability, Discovered, Spec

METHODS: tuple[Method[RequestEnv], ...] = (
    Method("Email/get", MAIL, email_get, writes=False),
    Method("Email/changes", MAIL, email_changes, writes=False),
    Method("Email/query", MAIL, email_query, writes=False),
    Method("Email/queryChanges", MAIL, email_query_changes, writes=False),
    Method("Email/copy", MAIL, email_copy, writes=True),
    Method("Email/parse", MAIL, email_parse, writes=False),
    Method("Email/set", MAIL, email_set, writes=True),
    Method("Email/import", MAIL, email_import, writes=True),
    Method("SearchSnippet/get", MAIL, search_snippet_get, writes=False),
    Method("Thread/get", MAIL, thread_get, writes=False),
    Method("Thread/changes", MAIL, thread_changes, writes=False),
)


def mail_account_capability(settings: Settings, discovered: Discovered) -> JsonObject:
    """RFC 8621 1.3.1: the mail capability of a user's own account.

    Declared here, once, for the mail capability's four types: Mailbox's package names the
    capability without declaring it, and this package already builds on that one.
    """
    return {
        "maxMailboxesPerEmail": settings.max_mailboxes_per_email,
        "maxMailboxDepth": None,
        "maxSizeMailboxName": MAX_NAME_OCTETS,
        "maxSizeAttachmentsPerEmail": settings.max_size_attachments_per_email,
        "emailQuerySortOptions": sorted(SORTS),
        "mayCreateTopLevelMailbox": True,
    }


# RFC 8621 1.3.1: the Session-level mail capability object is empty.
SPEC = Spec(
    MAIL,
    METHODS,
    declares=Capability(MAIL, session=lambda settings, _: {}, account=mail_account_capability),
)
