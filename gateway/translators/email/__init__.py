"""Email and Thread methods (RFC 8621 3, 4): IMAP messages as JMAP Emails and Threads."""

from __future__ import annotations

from gateway.env import RequestEnv
from gateway.jmap.capabilities import MAIL
from gateway.jmap.dispatch import Method, MethodRegistry
from gateway.translators.email.copy import email_copy
from gateway.translators.email.get import email_changes, email_get
from gateway.translators.email.importer import email_import
from gateway.translators.email.parse import email_parse
from gateway.translators.email.query import email_query, email_query_changes
from gateway.translators.email.set import email_set
from gateway.translators.email.snippet import search_snippet_get
from gateway.translators.email.thread import thread_changes, thread_get

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


def register(registry: MethodRegistry[RequestEnv]) -> None:
    for method in METHODS:
        registry.add(method)
