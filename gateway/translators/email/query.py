"""Email/query and Email/queryChanges (RFC 8621 4.4, 4.5).

The list view every client asks for, a folder newest first, is read from the index's by-date
sorted set: the window costs O(log n + limit) however large the folder, and its total one
ZCARD. Unread or flagged emails (in a folder or anywhere), a folder by size and collapsed
threads are read from the query structures the same way (indexed_query.py). Every other query
filters the index's records, asks the upstream's IMAP SEARCH for
conditions on the messages' text (mapping UIDs back through the uid maps), reads
hasAttachment from cached structures or BODYSTRUCTURE, and sorts in memory; sorting by from,
to, subject or sentAt reads the cached parsed headers, fetching the ones not cached yet
(once, with HEADER.FIELDS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.cache.emails import EMAIL, EmailRecord, EmailStore
from gateway.env import RequestEnv
from gateway.imap.lazy import LazyConnection
from gateway.jmap.dispatch import CallContext
from gateway.jmap.errors import MethodError
from gateway.jmap.query import Window, query_changes
from gateway.jmap.standard import (
    Extra,
    QueryArgs,
    QueryChangesArgs,
    as_bool,
    parse_query,
    parse_query_changes,
)
from gateway.translators.email.attachments import has_attachments
from gateway.translators.email.fetch import load
from gateway.translators.email.filtering import (
    HEADER_SORTS,
    Context,
    Filter,
    Leaf,
    Node,
    SortKey,
    TextSearch,
    matches,
    parse_filter,
    parse_sort,
    required_mailbox,
    sort_value,
    text_searches,
    uses,
)
from gateway.translators.email.indexed_query import indexed_query
from gateway.translators.email.properties import Source
from gateway.translators.email.search import run_searches
from gateway.translators.mailbox.view import MailboxView, mailbox_view
from gateway.translators.responses import query_changes_response, query_response, windowed_response

COLLAPSE = "collapseThreads"
# RFC 8621 4.4: the argument Email/query and Email/queryChanges add, read with the standard ones.
EXTRA: dict[str, Extra] = {COLLAPSE: (as_bool, False)}
THREAD_CONDITIONS = ("allInThreadHaveKeyword", "someInThreadHaveKeyword", "noneInThreadHaveKeyword")


@dataclass(frozen=True)
class _Query:
    """What Email/query and Email/queryChanges share: the filter, sort and collapsing."""

    tree: Filter | None
    sort: list[SortKey]
    collapse: bool

    @classmethod
    def of(cls, args: QueryArgs | QueryChangesArgs) -> _Query:
        return cls(parse_filter(args.filter), parse_sort(args.sort), args.extra[COLLAPSE])


async def email_query(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    args = parse_query(arguments, extra=EXTRA)
    query = _Query.of(args)
    tree, sort, collapse = query.tree, query.sort, query.collapse
    env = ctx.env
    # The windows from the index need the catch-up, not the mailboxes: reading and decoding
    # them is a round trip and a tenth of the warm list screen's CPU (bench.load).
    await env.catch_up()
    store = env.index.emails
    folder = _only_folder(tree)
    if not collapse and _by_received(sort) and (tree is None or folder is not None):
        return await _by_date(store, args, folder, sort[0].ascending)
    indexed = await indexed_query(store, args, tree, sort, collapse)
    if indexed is not None:
        return indexed
    view = await mailbox_view(env)
    async with env.upstream() as upstream:
        ids, state = await _run(upstream, view, store, query)
    return windowed_response(args, state, ids)


async def email_query_changes(
    ctx: CallContext[RequestEnv], arguments: dict[str, Any]
) -> dict[str, Any]:
    """RFC 8620 5.6 with the changed emails as the ones to re-place: an email changed since
    the old state, or in a thread one did (thread keyword conditions and collapsed threads
    depend on the other emails of the thread), is removed and, if it still matches, added."""
    args = parse_query_changes(arguments, extra=EXTRA)
    query = _Query.of(args)
    env = ctx.env
    view = await mailbox_view(env)
    store = env.index.emails
    changes = await store.state.changes(EMAIL, args.since_query_state, None)
    async with env.upstream() as upstream:
        ids, state = await _run(upstream, view, store, query)
    changed = {*changes.created, *changes.updated, *changes.destroyed}
    if query.collapse or _about_threads(query.tree, query.sort):
        if changes.destroyed:
            # A destroyed email's thread is not known any more, and its mates' place in a
            # thread-dependent result may have changed with it.
            raise MethodError(
                "cannotCalculateChanges", "Emails were destroyed in threads this query reads"
            )
        records = await store.records(changed)
        threads = await store.thread_snapshot({r.thread_id for r in records.values()})
        for members in threads[0].values():
            changed.update(members)
    if state != changes.new_state:
        # The index moved between the two reads: the old state cannot be bridged exactly.
        raise MethodError("cannotCalculateChanges", "The mailbox changed during the query")
    result = query_changes(
        changed=changed, current=ids, up_to_id=args.up_to_id, max_changes=args.max_changes
    )
    return query_changes_response(args, state, result, ids)


def _only_folder(tree: Filter | None) -> str | None:
    """The folder of a filter that is exactly ``{"inMailbox": id}``."""
    if isinstance(tree, Leaf) and tree.name == "inMailbox":
        return str(tree.value)
    return None


def _by_received(sort: list[SortKey]) -> bool:
    return len(sort) == 1 and sort[0].property == "receivedAt"


async def _by_date(
    store: EmailStore, args: Any, folder: str | None, ascending: bool
) -> dict[str, Any]:
    """A folder (or everything) by receivedAt from the sorted set, in O(log n + limit)."""
    page = await store.dated_window(
        folder,
        ascending=ascending,
        position=args.position,
        anchor=args.anchor,
        anchor_offset=args.anchor_offset,
        limit=args.limit,
    )
    if page is None:
        raise MethodError("anchorNotFound", f"{args.anchor!r} is not in the results")
    position, ids, total, state = page
    result = Window(position=position, ids=ids, limit=None)
    return query_response(args.account_id, state, result, total if args.calculate_total else None)


async def _run(
    upstream: LazyConnection,
    view: MailboxView,
    store: EmailStore,
    query: _Query,
) -> tuple[list[str], str]:
    """Every matching email id in order, and the Email state they were read at.

    Only the records that can match are read: those a required text condition found, else
    those of a required folder, else all; with the other emails of their threads when thread
    keywords are asked about.
    """
    tree, sort, collapse = query.tree, query.sort, query.collapse
    # The state is read first: the results may then reflect later changes too, which a
    # queryChanges from this state reports again (harmless); a state read after could claim
    # changes the results missed, which would never be reported.
    state = await store.state.state(EMAIL)
    searches = text_searches(tree)
    only = required_mailbox(tree)
    matched = await run_searches(upstream, view, store, searches, only) if searches else {}
    candidates = await _candidates(store, tree, matched)
    records = await store.records(candidates)  # in pages: no one script holds Redis long
    visible = {i: r for i, r in records.items() if r.visible}
    if _about_threads(tree, sort):
        members, _ = await store.thread_snapshot({r.thread_id for r in visible.values()})
        others = {i for ids in members.values() for i in ids} - visible.keys()
        mates = {i: r for i, r in (await store.records(others)).items() if r.visible}
    else:
        mates = {}
    threads: dict[str, list[EmailRecord]] = {}
    for record in [*visible.values(), *mates.values()]:
        threads.setdefault(record.thread_id, []).append(record)
    context = Context(threads, matched)
    if uses(tree, "hasAttachment"):
        folder = required_mailbox(tree)
        in_folder = {i: r for i, r in visible.items() if folder is None or folder in r.mailbox_ids}
        context.attachments = await has_attachments(upstream, store, view.records, in_folder)
    found = [r for r in visible.values() if matches(tree, r, context)]
    summaries: dict[str, dict[str, Any]] = {}
    if any(key.property in HEADER_SORTS for key in sort):
        wanted = {r.id: r for r in found}
        loaded = await load(store, upstream, view.records, wanted, {Source.SUMMARY})
        summaries = loaded.summary
    # Equal on every comparator: by id, in the first comparator's direction (as the by-date
    # sorted set orders equal dates), so both ways of answering agree.
    ordered = sorted(found, key=lambda r: r.id, reverse=not sort[0].ascending)
    for key in reversed(sort):
        ordered.sort(
            key=lambda r, k=key: sort_value(k, r, context, summaries.get(r.id)),  # type: ignore[misc]
            reverse=not key.ascending,
        )
    ids = [r.id for r in ordered]
    if collapse:
        seen: set[str] = set()
        ids = [
            r.id
            for r in ordered
            if not (r.thread_id in seen or seen.add(r.thread_id))  # type: ignore[func-returns-value]
        ]
    return ids, state


async def _candidates(
    store: EmailStore, tree: Filter | None, matched: dict[int, set[str]]
) -> list[str]:
    required = _required_text(tree)
    if required:
        return list(set.intersection(*(matched.get(search.key, set()) for search in required)))
    folder = required_mailbox(tree)
    if folder is not None:
        return await store.dated_ids(folder)
    return await store.all_ids()


def _required_text(tree: Filter | None) -> list[TextSearch]:
    """Text searches every match must meet: the filter itself, or children of its AND."""
    if isinstance(tree, TextSearch):
        return [tree]
    if isinstance(tree, Node) and tree.operator == "AND":
        return [child for child in tree.children if isinstance(child, TextSearch)]
    return []


def _about_threads(tree: Filter | None, sort: list[SortKey]) -> bool:
    return any(uses(tree, name) for name in THREAD_CONDITIONS) or any(
        key.property in THREAD_CONDITIONS for key in sort
    )
