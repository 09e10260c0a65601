"""Mailbox/query over Mailbox objects already built (RFC 8621 2.3), with no I/O.

The gateway knows every Mailbox of an account, so it filters and sorts them itself
rather than asking IMAP. `run_mailbox_query` returns the full ordered id list, which
`gateway.jmap.query.window` then cuts for the response.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from gateway.jmap.errors import MethodError
from gateway.jmap.query import DEFAULT_COLLATION, collation_key, resolve_collation
from gateway.jmap.standard import (
    FILTER_OPERATORS,
    MAX_FILTER_DEPTH,
    Comparator,
    InvalidValue,
    as_bool,
    as_id,
    as_string,
    nullable,
)

Mailbox = Mapping[str, Any]

# RFC 8621 2.3: these properties MUST be supported for sorting; no others are.
MAILBOX_SORT_PROPERTIES = ("sortOrder", "name")


def _name_contains(wanted: str, mailbox: Mailbox) -> bool:
    """RFC 8621 2.3 only says the name "contains the given string", naming no collation.

    The match ignores case as the default collation does (RFC 8620 5.5 says it SHOULD
    be case insensitive): people type a folder name without minding its case, and a
    name filter that found "Inbox" but not "INBOX" would look broken. Under
    i;unicode-casemap, accents are separate marks, so "e" also finds "é".
    """
    return collation_key(wanted, DEFAULT_COLLATION) in collation_key(
        mailbox["name"], DEFAULT_COLLATION
    )


class _ConditionProperty(NamedTuple):
    """How one FilterCondition property is read from JSON and tested against a Mailbox."""

    convert: Callable[[object], object]
    test: Callable[[Any, Mailbox], bool]


# RFC 8621 2.3: the FilterCondition properties.
_CONDITIONS: dict[str, _ConditionProperty] = {
    "parentId": _ConditionProperty(nullable(as_id), lambda v, m: m["parentId"] == v),
    "name": _ConditionProperty(as_string, _name_contains),
    "role": _ConditionProperty(nullable(as_string), lambda v, m: m["role"] == v),
    # hasAnyRole false matches the Mailboxes without a role.
    "hasAnyRole": _ConditionProperty(as_bool, lambda v, m: (m["role"] is not None) == v),
    "isSubscribed": _ConditionProperty(as_bool, lambda v, m: m["isSubscribed"] == v),
}


@dataclass(frozen=True)
class MailboxCondition:
    """A FilterCondition: the properties given, with their values (RFC 8621 2.3)."""

    values: Mapping[str, object]


@dataclass(frozen=True)
class MailboxOperator:
    """A FilterOperator (RFC 8620 5.5): AND, OR or NOT over nested filters."""

    operator: str
    conditions: tuple[MailboxFilter, ...]


MailboxFilter = MailboxOperator | MailboxCondition


def parse_mailbox_filter(value: object) -> MailboxFilter | None:
    """Parse the `filter` argument; None (null) means every Mailbox matches.

    Wrong JSON types are invalidArguments naming "filter". An unknown condition property
    is unsupportedFilter, raised only once the whole filter proved syntactically valid,
    because RFC 8620 5.5 keeps unsupportedFilter for filters that are.
    """
    if value is None:
        return None
    unknown: set[str] = set()
    parsed = _parse_node(value, 1, unknown)
    if unknown:
        names = ", ".join(sorted(unknown))
        raise MethodError("unsupportedFilter", f"Unsupported filter properties: {names}")
    return parsed


def _parse_node(value: object, depth: int, unknown: set[str]) -> MailboxFilter:
    """Parse a FilterOperator or FilterCondition found `depth` operators deep."""
    if not isinstance(value, dict):
        raise _invalid_filter("must be a FilterOperator or FilterCondition object")
    # RFC 8620 5.5: a FilterCondition MUST NOT have an operator property.
    if "operator" in value:
        return _parse_operator(value, depth, unknown)
    return _parse_condition(value, unknown)


def _parse_operator(value: dict[str, Any], depth: int, unknown: set[str]) -> MailboxOperator:
    """Parse a FilterOperator and, depth permitting, its conditions."""
    operator, conditions = value["operator"], value.get("conditions")
    # RFC 8620 5.5: operator MUST be one of "AND" / "OR" / "NOT".
    if not isinstance(operator, str) or operator not in FILTER_OPERATORS:
        raise _invalid_filter("operator must be AND, OR or NOT")
    if not isinstance(conditions, list):
        raise _invalid_filter("conditions must be an array")
    if depth > MAX_FILTER_DEPTH:
        raise MethodError("unsupportedFilter", f"Filters nest deeper than {MAX_FILTER_DEPTH}")
    nested = tuple(_parse_node(item, depth + 1, unknown) for item in conditions)
    return MailboxOperator(operator, nested)


def _parse_condition(value: dict[str, Any], unknown: set[str]) -> MailboxCondition:
    """Convert the known properties; collect the unknown ones for unsupportedFilter."""
    unknown.update(name for name in value if name not in _CONDITIONS)
    known = {name: item for name, item in value.items() if name in _CONDITIONS}
    return MailboxCondition({name: _convert_condition(name, item) for name, item in known.items()})


def _convert_condition(name: str, value: object) -> object:
    """Convert one condition property, naming it if its JSON type is wrong."""
    try:
        return _CONDITIONS[name].convert(value)
    except InvalidValue as problem:
        raise _invalid_filter(f"{name} {problem}") from None


def _invalid_filter(reason: str) -> MethodError:
    """An invalidArguments naming the filter argument, worded as ArgReader words them."""
    return MethodError.invalid_arguments(f"filter: {reason}", arguments=["filter"])


def matches(mailbox_filter: MailboxFilter | None, mailbox: Mailbox) -> bool:
    """Tell whether a Mailbox matches a filter; no filter matches everything."""
    if mailbox_filter is None:
        return True
    if isinstance(mailbox_filter, MailboxCondition):
        # RFC 8621 2.3: all given properties must match; none given matches everything.
        return all(_CONDITIONS[k].test(v, mailbox) for k, v in mailbox_filter.values.items())
    results = (matches(nested, mailbox) for nested in mailbox_filter.conditions)
    if mailbox_filter.operator == "AND":
        return all(results)
    if mailbox_filter.operator == "OR":
        return any(results)
    return not any(results)


@dataclass(frozen=True)
class MailboxComparator:
    """One sort criterion; `collation` is set for name and None for sortOrder."""

    property: str
    is_ascending: bool
    collation: str | None

    def key(self, mailbox: Mailbox) -> Any:
        """The value this criterion orders a Mailbox by."""
        if self.collation is None:
            return mailbox[self.property]
        return collation_key(mailbox[self.property], self.collation)


# The order when the sort is null or empty, which RFC 8620 5.5 leaves to the server:
# the order the user set, then names, as clients show folders.
DEFAULT_MAILBOX_SORT = (
    MailboxComparator("sortOrder", True, None),
    MailboxComparator("name", True, DEFAULT_COLLATION),
)


def parse_mailbox_sort(comparators: Sequence[Comparator] | None) -> list[MailboxComparator]:
    """Check the `sort` argument parsed by standard.py; null and [] give the default order."""
    if not comparators:
        return list(DEFAULT_MAILBOX_SORT)
    return [_parse_comparator(comparator) for comparator in comparators]


def _parse_comparator(comparator: Comparator) -> MailboxComparator:
    """A comparator on a property Mailbox/query can sort on.

    Mailbox/query defines no comparator members of its own; others are ignored, as on every
    Email sort and as Cyrus does (jmapc sends position, anchorOffset and calculateTotal in
    each comparator).
    """
    if comparator.property not in MAILBOX_SORT_PROPERTIES:
        raise MethodError("unsupportedSort", f"Cannot sort Mailboxes by {comparator.property!r}")
    if comparator.property == "sortOrder":
        # RFC 8620 5.5: for a property that is not a string, collation is ignored.
        return MailboxComparator("sortOrder", comparator.is_ascending, None)
    collation = resolve_collation(comparator.collation)
    return MailboxComparator("name", comparator.is_ascending, collation)


def run_mailbox_query(
    mailboxes: Sequence[Mailbox],
    mailbox_filter: MailboxFilter | None,
    sort: Sequence[MailboxComparator],
    *,
    sort_as_tree: bool,
    filter_as_tree: bool,
) -> list[str]:
    """Return the ids of every matching Mailbox, in order: the full Mailbox/query results.

    `mailboxes` must be every Mailbox of the account, not only those that match: under
    sortAsTree a match is placed by its ancestors, and under filterAsTree it is kept
    only if its ancestors match too, whether or not they are in the results. Ties are
    broken by id so the order is stable between calls, as RFC 8620 5.5 requires.
    """
    ordered = _tree_order(mailboxes, sort) if sort_as_tree else _sorted(mailboxes, sort)
    if filter_as_tree:
        kept = {m["id"] for m in _walk_tree(mailboxes, lambda m: matches(mailbox_filter, m))}
        return [m["id"] for m in ordered if m["id"] in kept]
    return [m["id"] for m in ordered if matches(mailbox_filter, m)]


def _sorted(mailboxes: Sequence[Mailbox], sort: Sequence[MailboxComparator]) -> list[Mailbox]:
    """Sort by the comparators, ties by id ascending whatever the direction.

    Python's sort is stable, also with reverse=True, so sorting by id and then by each
    comparator from the least significant up yields the combined order.
    """
    ordered = sorted(mailboxes, key=lambda mailbox: mailbox["id"])
    for comparator in reversed(sort):
        ordered.sort(key=comparator.key, reverse=not comparator.is_ascending)
    return ordered


def _tree_order(mailboxes: Sequence[Mailbox], sort: Sequence[MailboxComparator]) -> list[Mailbox]:
    """RFC 8621 2.3 sortAsTree: each parent first, then its children sorted among themselves.

    A depth-first walk that visits siblings in sort order puts ancestors before their
    descendants and orders two Mailboxes by their nearest ancestors that are siblings,
    which is exactly the RFC's rule.
    """
    return list(_walk_tree(_sorted(mailboxes, sort), lambda _mailbox: True))


def _walk_tree(mailboxes: Sequence[Mailbox], enter: Callable[[Mailbox], bool]) -> Iterator[Mailbox]:
    """Yield Mailboxes depth first, parents before children, keeping the given sibling order.

    A Mailbox whose parent is not in `mailboxes` is a root. Only Mailboxes for which
    `enter` is true are yielded, and the subtree under any other is skipped, which is
    how filterAsTree drops a Mailbox whose ancestor fails the filter. parentId links
    form a forest, as the IMAP hierarchy they come from does.
    """
    present = {mailbox["id"] for mailbox in mailboxes}
    children: dict[str | None, list[Mailbox]] = {}
    for mailbox in mailboxes:
        parent = mailbox["parentId"] if mailbox["parentId"] in present else None
        children.setdefault(parent, []).append(mailbox)
    stack = list(reversed(children.get(None, [])))
    while stack:
        mailbox = stack.pop()
        if enter(mailbox):
            yield mailbox
            stack.extend(reversed(children.get(mailbox["id"], [])))


def with_descendants(mailboxes: Sequence[Mailbox], ids: Collection[str]) -> set[str]:
    """Return `ids` and the ids of all their descendants among `mailboxes`.

    Under sortAsTree or filterAsTree a Mailbox's place and membership follow its
    ancestors, so Mailbox/queryChanges must pass this, not just the changed ids, as
    `changed` to `gateway.jmap.query.query_changes`. The current tree is enough: if a
    Mailbox's ancestry changed, the lowest Mailbox on its path whose parentId changed
    is itself changed and is still its ancestor (or itself).
    """
    affected = set(ids)
    for mailbox in _walk_tree(mailboxes, lambda _mailbox: True):
        if mailbox["parentId"] in affected:
            affected.add(mailbox["id"])
    return affected
