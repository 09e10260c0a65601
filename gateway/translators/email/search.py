"""The text conditions of an Email filter, answered by the upstream's UID SEARCH.

Each :class:`TextSearch` of a filter (a text condition, or an AND, OR or NOT of several) is
one SEARCH key: ANDed keys side by side, ``OR a b`` nested for OR (RFC 3501 6.4.4), ``NOT``
of an OR for NOT. So a folder costs one command per TextSearch, however many conditions it
holds, and the UIDs found map back through the folder's uid map.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.cache.emails import EmailStore
from gateway.imap.commands import Arg, Group, astring
from gateway.imap.connection import ImapConnection
from gateway.imap.errors import CommandFailed
from gateway.imap.lazy import LazyConnection
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


# One IMAP search-key (RFC 3501 6.4.4) as the tokens that make it, e.g. ["FROM", '"bob"'].
SearchKey = list[Arg]


def criteria(tree: Filter) -> list[Arg]:
    """The SEARCH arguments that match what a text-only part of the filter matches."""
    return [token for key in _keys(tree) for token in key]


def _keys(tree: Filter) -> list[SearchKey]:
    """Search-keys whose conjunction matches ``tree`` (SEARCH ANDs its keys)."""
    if isinstance(tree, TextSearch):
        return _keys(tree.tree)
    if isinstance(tree, Leaf):
        return [[name, *(astring(v) for v in values)] for name, *values in search_key(tree)]
    children = [_keys(child) for child in tree.children]
    if tree.operator == "AND":
        return [key for keys in children for key in keys] or [["ALL"]]
    # RFC 8620 5.5: NOT matches when none of its conditions does, i.e. NOT of their OR.
    either = _any_of([_one(keys) for keys in children])
    return [either] if tree.operator == "OR" else [["NOT", *either]]


def _any_of(keys: list[SearchKey]) -> SearchKey:
    """``OR a OR b c``: one key matching what any of ``keys`` matches (none: nothing)."""
    if not keys:
        return ["NOT", "ALL"]
    either = keys[-1]
    for key in reversed(keys[:-1]):
        either = ["OR", *key, *either]
    return either


def _one(keys: list[SearchKey]) -> SearchKey:
    """ANDed keys as the single key OR and NOT take: a parenthesized list if several."""
    return keys[0] if len(keys) == 1 else [Group(*(token for key in keys for token in key))]


async def _uid_search(conn: ImapConnection, search: TextSearch) -> UidSet:
    """UID SEARCH of one TextSearch, UTF-8 where its text needs it."""
    keys = criteria(search)
    charset = any(not leaf_text.isascii() for leaf_text in _texts(search.tree))
    prefix = ["CHARSET", "UTF-8"] if charset else []
    try:
        return await conn.uid_search(*prefix, *keys)
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
