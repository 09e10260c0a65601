"""Mailbox/query filtering and sorting (RFC 8621 2.3) over built Mailbox objects."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.jmap.errors import MethodError
from gateway.jmap.query import query_changes
from gateway.jmap.standard import Comparator, as_sort
from gateway.translators.mailbox.filtering import (
    DEFAULT_MAILBOX_SORT,
    MAILBOX_SORT_PROPERTIES,
    MAX_FILTER_DEPTH,
    MailboxComparator,
    MailboxCondition,
    MailboxOperator,
    matches,
    parse_mailbox_filter,
    parse_mailbox_sort,
    run_mailbox_query,
    with_descendants,
)


def mailbox(
    id_: str,
    name: str,
    *,
    parent: str | None = None,
    role: str | None = None,
    sort_order: int = 10,
    subscribed: bool = True,
) -> dict[str, Any]:
    return {
        "id": id_,
        "name": name,
        "parentId": parent,
        "role": role,
        "sortOrder": sort_order,
        "totalEmails": 0,
        "unreadEmails": 0,
        "totalThreads": 0,
        "unreadThreads": 0,
        "myRights": {},
        "isSubscribed": subscribed,
    }


# Ids deliberately do not sort like names, so tie-breaking by id is visible.
#   Inbox (1), Sent (3), Trash (6, unsubscribed), Announcements [lists],
#   Work / Clients (unsubscribed) / ACME, and Work / hr.
MAILBOXES = [
    mailbox("work", "Work"),
    mailbox("acme", "ACME", parent="clients"),
    mailbox("inbox", "Inbox", role="inbox", sort_order=1),
    mailbox("hr", "hr", parent="work"),
    mailbox("trash", "Trash", role="trash", sort_order=6, subscribed=False),
    mailbox("lists", "Announcements"),
    mailbox("clients", "Clients", parent="work", subscribed=False),
    mailbox("sent", "Sent", role="sent", sort_order=3),
]

DEFAULT_ORDER = ["inbox", "sent", "trash", "acme", "lists", "clients", "hr", "work"]
TREE_ORDER = ["inbox", "sent", "trash", "lists", "work", "clients", "acme", "hr"]


def query(
    filter_: object = None,
    sort: object = None,
    *,
    sort_as_tree: bool = False,
    filter_as_tree: bool = False,
    mailboxes: list[dict[str, Any]] = MAILBOXES,
) -> list[str]:
    comparators = None if sort is None else as_sort(sort)
    return run_mailbox_query(
        mailboxes,
        parse_mailbox_filter(filter_),
        parse_mailbox_sort(comparators),
        sort_as_tree=sort_as_tree,
        filter_as_tree=filter_as_tree,
    )


def method_error(type_: str, call: Any, *args: Any) -> MethodError:
    with pytest.raises(MethodError) as caught:
        call(*args)
    assert caught.value.type == type_
    return caught.value


# Filter conditions


def test_no_filter_and_default_sort() -> None:
    assert query() == DEFAULT_ORDER


def test_empty_condition_matches_everything() -> None:
    assert query({}) == DEFAULT_ORDER


def test_parent_id() -> None:
    assert query({"parentId": "work"}) == ["clients", "hr"]
    assert query({"parentId": None}) == ["inbox", "sent", "trash", "lists", "work"]


def test_name_is_a_case_insensitive_substring() -> None:
    assert query({"name": "s"}) == ["sent", "trash", "lists", "clients"]
    assert query({"name": "INBOX"}) == ["inbox"]
    assert query({"name": "nope"}) == []


def test_name_folds_case_beyond_ascii() -> None:
    mailboxes = [mailbox("a", "Élan"), mailbox("b", "Elan"), mailbox("c", "Other")]
    assert query({"name": "élan"}, mailboxes=mailboxes) == ["a"]
    assert query({"name": "lan"}, mailboxes=mailboxes) == ["b", "a"]


def test_role() -> None:
    assert query({"role": "inbox"}) == ["inbox"]
    assert query({"role": None}) == ["acme", "lists", "clients", "hr", "work"]


def test_has_any_role() -> None:
    assert query({"hasAnyRole": True}) == ["inbox", "sent", "trash"]
    assert query({"hasAnyRole": False}) == ["acme", "lists", "clients", "hr", "work"]


def test_is_subscribed() -> None:
    assert query({"isSubscribed": False}) == ["trash", "clients"]


def test_every_property_of_a_condition_must_match() -> None:
    assert query({"parentId": None, "hasAnyRole": False}) == ["lists", "work"]


# Filter operators


def test_and() -> None:
    filter_ = {"operator": "AND", "conditions": [{"parentId": None}, {"name": "s"}]}
    assert query(filter_) == ["sent", "trash", "lists"]


def test_or() -> None:
    filter_ = {"operator": "OR", "conditions": [{"role": "inbox"}, {"parentId": "clients"}]}
    assert query(filter_) == ["inbox", "acme"]


def test_not_matches_when_no_condition_does() -> None:
    filter_ = {"operator": "NOT", "conditions": [{"hasAnyRole": True}, {"parentId": "work"}]}
    assert query(filter_) == ["acme", "lists", "work"]


def test_nested_operators() -> None:
    filter_ = {
        "operator": "AND",
        "conditions": [
            {"operator": "NOT", "conditions": [{"isSubscribed": False}]},
            {"operator": "OR", "conditions": [{"parentId": None}, {"name": "me"}]},
        ],
    }
    assert query(filter_) == ["inbox", "sent", "acme", "lists", "work"]


def test_operators_without_conditions() -> None:
    assert query({"operator": "AND", "conditions": []}) == DEFAULT_ORDER
    assert query({"operator": "OR", "conditions": []}) == []
    assert query({"operator": "NOT", "conditions": []}) == DEFAULT_ORDER


def test_parsed_filter_shape() -> None:
    parsed = parse_mailbox_filter({"operator": "NOT", "conditions": [{"role": None}]})
    assert parsed == MailboxOperator("NOT", (MailboxCondition({"role": None}),))
    assert parse_mailbox_filter(None) is None
    assert matches(None, MAILBOXES[0])


# Filter errors


@pytest.mark.parametrize(
    ("filter_", "description"),
    [
        ("inbox", "filter: must be a FilterOperator or FilterCondition object"),
        ({"parentId": 5}, "filter: parentId must be an Id"),
        ({"parentId": "not an id"}, "filter: parentId must be an Id"),
        ({"name": None}, "filter: name must be a String"),
        ({"role": 1}, "filter: role must be a String"),
        ({"hasAnyRole": "yes"}, "filter: hasAnyRole must be a Boolean"),
        ({"isSubscribed": None}, "filter: isSubscribed must be a Boolean"),
        ({"operator": "XOR", "conditions": []}, "filter: operator must be AND, OR or NOT"),
        ({"operator": ["AND"], "conditions": []}, "filter: operator must be AND, OR or NOT"),
        ({"operator": "AND"}, "filter: conditions must be an array"),
        (
            {"operator": "OR", "conditions": [[]]},
            "filter: must be a FilterOperator or FilterCondition object",
        ),
    ],
)
def test_wrong_json_types_are_invalid_arguments(filter_: object, description: str) -> None:
    error = method_error("invalidArguments", parse_mailbox_filter, filter_)
    assert error.to_arguments() == {
        "type": "invalidArguments",
        "description": description,
        "arguments": ["filter"],
    }


def test_unknown_condition_properties_are_unsupported_filter() -> None:
    filter_ = {
        "operator": "OR",
        "conditions": [
            {"name": "x", "sortOrder": 3},
            {"operator": "NOT", "conditions": [{"a": 1}]},
        ],
    }
    error = method_error("unsupportedFilter", parse_mailbox_filter, filter_)
    assert error.description == "Unsupported filter properties: a, sortOrder"


def test_bad_types_win_over_unknown_properties() -> None:
    filter_ = {"operator": "AND", "conditions": [{"bogus": 1}, {"name": 5}]}
    method_error("invalidArguments", parse_mailbox_filter, filter_)


def nested(depth: int) -> dict[str, Any]:
    filter_: dict[str, Any] = {"isSubscribed": True}
    for _ in range(depth):
        filter_ = {"operator": "AND", "conditions": [filter_]}
    return filter_


def test_filter_depth_is_limited() -> None:
    assert query(nested(MAX_FILTER_DEPTH)) == ["inbox", "sent", "acme", "lists", "hr", "work"]
    error = method_error("unsupportedFilter", parse_mailbox_filter, nested(MAX_FILTER_DEPTH + 1))
    assert error.description == "Filters nest deeper than 32"


# Sorting


def test_sort_properties() -> None:
    assert MAILBOX_SORT_PROPERTIES == ("sortOrder", "name")


def test_sort_by_sort_order_breaks_ties_by_id() -> None:
    expected = ["inbox", "sent", "trash", "acme", "clients", "hr", "lists", "work"]
    assert query(sort=[{"property": "sortOrder"}]) == expected


def test_sort_by_sort_order_descending_still_breaks_ties_by_id_ascending() -> None:
    expected = ["acme", "clients", "hr", "lists", "work", "trash", "sent", "inbox"]
    assert query(sort=[{"property": "sortOrder", "isAscending": False}]) == expected


def test_sort_by_name_ignores_case_by_default() -> None:
    expected = ["acme", "lists", "clients", "hr", "inbox", "sent", "trash", "work"]
    assert query(sort=[{"property": "name"}]) == expected


def test_sort_by_name_descending() -> None:
    expected = ["work", "trash", "sent", "inbox", "hr", "clients", "lists", "acme"]
    assert query(sort=[{"property": "name", "isAscending": False}]) == expected


def test_sort_by_name_with_octet_collation() -> None:
    expected = ["acme", "lists", "clients", "inbox", "sent", "trash", "work", "hr"]
    assert query(sort=[{"property": "name", "collation": "i;octet"}]) == expected


def test_sort_by_several_comparators() -> None:
    sort = [{"property": "sortOrder", "isAscending": False}, {"property": "name"}]
    expected = ["acme", "lists", "clients", "hr", "work", "trash", "sent", "inbox"]
    assert query(sort=sort) == expected


def test_equal_names_are_ordered_by_id() -> None:
    mailboxes = [mailbox("b", "Inbox"), mailbox("c", "inbox"), mailbox("a", "INBOX")]
    assert query(sort=[{"property": "name"}], mailboxes=mailboxes) == ["a", "b", "c"]
    descending = [{"property": "name", "isAscending": False}]
    assert query(sort=descending, mailboxes=mailboxes) == ["a", "b", "c"]


def test_parse_sort() -> None:
    assert parse_mailbox_sort(None) == list(DEFAULT_MAILBOX_SORT)
    assert parse_mailbox_sort([]) == list(DEFAULT_MAILBOX_SORT)
    assert parse_mailbox_sort([Comparator("name", False)]) == [
        MailboxComparator("name", False, "i;unicode-casemap")
    ]


def test_collation_is_ignored_for_sort_order() -> None:
    # RFC 8620 5.5: collation is ignored when the property is not a string.
    parsed = parse_mailbox_sort([Comparator("sortOrder", True, "i;unknown")])
    assert parsed == [MailboxComparator("sortOrder", True, None)]


def test_unsupported_sort_property() -> None:
    error = method_error("unsupportedSort", parse_mailbox_sort, [Comparator("totalEmails")])
    assert error.description == "Cannot sort Mailboxes by 'totalEmails'"


def test_unsupported_collation() -> None:
    method_error("unsupportedSort", parse_mailbox_sort, [Comparator("name", True, "i;basic")])


def test_unknown_comparator_members_are_ignored() -> None:
    # What jmapc puts in every comparator (RFC 8620 5.5 lets types add members; Cyrus
    # ignores the ones it does not know, and so does every sort here).
    extra = {"keyword": "$seen", "position": 0, "anchorOffset": 0, "calculateTotal": False}
    comparator = Comparator("name", False, extra=extra)
    assert parse_mailbox_sort([comparator]) == parse_mailbox_sort([Comparator("name", False)])


# sortAsTree and filterAsTree


def test_sort_as_tree_keeps_descendants_under_their_ancestors() -> None:
    assert query(sort_as_tree=True) == TREE_ORDER


def test_sort_as_tree_by_name_in_both_directions() -> None:
    ascending = ["lists", "inbox", "sent", "trash", "work", "clients", "acme", "hr"]
    assert query(sort=[{"property": "name"}], sort_as_tree=True) == ascending
    descending = ["work", "hr", "clients", "acme", "trash", "sent", "inbox", "lists"]
    by_name_desc = [{"property": "name", "isAscending": False}]
    assert query(sort=by_name_desc, sort_as_tree=True) == descending


def test_sort_as_tree_treats_a_mailbox_with_a_missing_parent_as_a_root() -> None:
    mailboxes = [*MAILBOXES, mailbox("stray", "Bills", parent="deleted")]
    expected = ["inbox", "sent", "trash", "lists", "stray", "work", "clients", "acme", "hr"]
    assert query(sort_as_tree=True, mailboxes=mailboxes) == expected


def test_sort_as_tree_places_matches_by_ancestors_that_do_not_match() -> None:
    # Clients is filtered out, yet ACME stays under it: before hr, after Work.
    expected = ["inbox", "sent", "lists", "work", "acme", "hr"]
    assert query({"isSubscribed": True}, sort_as_tree=True) == expected


def test_filter_as_tree_drops_mailboxes_under_one_that_fails() -> None:
    assert query({"isSubscribed": True}) == ["inbox", "sent", "acme", "lists", "hr", "work"]
    expected = ["inbox", "sent", "lists", "hr", "work"]
    assert query({"isSubscribed": True}, filter_as_tree=True) == expected


def test_filter_as_tree_and_sort_as_tree() -> None:
    expected = ["inbox", "sent", "lists", "work", "hr"]
    assert query({"isSubscribed": True}, sort_as_tree=True, filter_as_tree=True) == expected


def test_filter_as_tree_keeps_a_match_whose_parent_is_missing() -> None:
    mailboxes = [*MAILBOXES, mailbox("stray", "Bills", parent="deleted")]
    assert query({"name": "bil"}, filter_as_tree=True, mailboxes=mailboxes) == ["stray"]


# queryChanges under sortAsTree


def test_with_descendants() -> None:
    assert with_descendants(MAILBOXES, {"work"}) == {"work", "clients", "acme", "hr"}
    assert with_descendants(MAILBOXES, {"clients", "gone"}) == {"clients", "acme", "gone"}
    assert with_descendants(MAILBOXES, set()) == set()


def splice(old: list[str], changed: set[str], new: list[str]) -> list[str]:
    """Apply a queryChanges answer to `old` as RFC 8620 5.6 tells clients to."""
    result = query_changes(changed=changed, current=new, up_to_id=None, max_changes=None)
    spliced = [id_ for id_ in old if id_ not in result.removed]
    for item in result.added:
        spliced.insert(item.index, item.id)
    return spliced


def test_query_changes_under_sort_as_tree_needs_the_descendants() -> None:
    renamed = [mailbox("work", "Accounts") if m["id"] == "work" else m for m in MAILBOXES]
    new = query(sort=[{"property": "name"}], sort_as_tree=True, mailboxes=renamed)
    assert new == ["work", "clients", "acme", "hr", "lists", "inbox", "sent", "trash"]
    old = query(sort=[{"property": "name"}], sort_as_tree=True)
    assert splice(old, {"work"}, new) != new
    assert splice(old, with_descendants(renamed, {"work"}), new) == new
