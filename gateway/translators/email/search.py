"""The text conditions of an Email filter, answered by the upstream's UID SEARCH.

Each :class:`TextSearch` of a filter (a text condition, or an AND, OR or NOT of several) is
one SEARCH criterion (:mod:`gateway.imap.search` writes it: keys side by side for AND,
``OR a b`` nested for OR, ``NOT`` of an OR for NOT). So a folder costs one command per
TextSearch, however many conditions it holds, and the UIDs found map back through the
folder's uid map.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.cache.emails import EmailStore
from gateway.imap.connection import ImapConnection
from gateway.imap.errors import CommandFailed
from gateway.imap.lazy import LazyConnection
from gateway.imap.search import And, Criterion, Header, Not, Or, Text, TextKey
from gateway.imap.sequence import UidSet
from gateway.jmap.errors import MethodError
from gateway.translators.email.filtering import Filter, Leaf, TextSearch, search_key
from gateway.translators.mailbox.view import MailboxView


async def run_searches(
    upstream: LazyConnection,
    view: MailboxView,
    store: EmailStore,
    searches: Sequence[TextSearch],
    only: str | None,
) -> dict[int, set[str]]:
    """Per TextSearch, the emails whose message the upstream finds, in every folder (or in
    ``only``)."""
    folders = [m for m in view.records.values() if m.selectable and (only is None or m.id == only)]
    found: dict[int, set[str]] = {search.key: set() for search in searches}
    for folder in folders:
        if not folder.total:
            continue
        conn = await upstream.connection()
        await conn.select(folder.name, read_only=True)
        for search in searches:
            uids = await _uid_search(conn, search)
            owners = await store.email_ids_of(folder.id, uids)
            found[search.key].update(owners.values())
    return found


def criteria(tree: Filter) -> Criterion:
    """The SEARCH criterion that matches what a text-only part of the filter matches."""
    if isinstance(tree, TextSearch):
        return criteria(tree.tree)
    if isinstance(tree, Leaf):
        return And(tuple(_key(name, values) for name, *values in search_key(tree)))
    children = tuple(criteria(child) for child in tree.children)
    if tree.operator == "AND":
        return And(children)
    # RFC 8620 5.5: NOT matches when none of its conditions does, i.e. NOT of their OR.
    return Or(children) if tree.operator == "OR" else Not(Or(children))


def _key(name: str, values: list[str]) -> Criterion:
    """One key of a text condition: ``HEADER name value`` or a text key and its value."""
    if name == "HEADER":
        return Header(values[0], values[1])
    return Text(TextKey(name), values[0])


async def _uid_search(conn: ImapConnection, search: TextSearch) -> UidSet:
    """UID SEARCH of one TextSearch, UTF-8 where its text needs it."""
    utf8 = any(not leaf_text.isascii() for leaf_text in _texts(search.tree))
    try:
        return await conn.uid_search(criteria(search), charset="UTF-8" if utf8 else None)
    except CommandFailed:
        raise MethodError(
            "unsupportedFilter", "The mail server cannot search the messages for this text"
        ) from None


def _texts(tree: Filter) -> list[str]:
    if isinstance(tree, TextSearch):
        return _texts(tree.tree)
    if isinstance(tree, Leaf):
        return [v for _, *values in search_key(tree) for v in values]
    return [text for child in tree.children for text in _texts(child)]
