"""Standard-method arguments (RFC 8620 5.1-5.6): typed parsing and one invalidArguments."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.jmap.errors import MethodError
from gateway.jmap.standard import (
    MAX_INT,
    ArgReader,
    ChangesArgs,
    Comparator,
    CopyArgs,
    GetArgs,
    QueryArgs,
    QueryChangesArgs,
    SetArgs,
    as_int,
    as_unsigned_int,
    check_if_in_state,
    parse_changes,
    parse_copy,
    parse_get,
    parse_query,
    parse_query_changes,
    parse_set,
)


def invalid(call: Any, *args: Any, **kwargs: Any) -> MethodError:
    with pytest.raises(MethodError) as caught:
        call(*args, **kwargs)
    assert caught.value.type == "invalidArguments"
    return caught.value


def test_get_defaults() -> None:
    assert parse_get({"accountId": "A1"}, 10) == GetArgs("A1", None, None)


def test_get_full() -> None:
    args = {"accountId": "A1", "ids": ["a", "b"], "properties": ["name"]}
    assert parse_get(args, 10) == GetArgs("A1", ["a", "b"], ["name"])


def test_get_collects_every_bad_argument() -> None:
    error = invalid(parse_get, {"ids": "a", "properties": [1], "bogus": True}, 10)
    assert error.to_arguments() == {
        "type": "invalidArguments",
        "description": "bogus: unknown argument; accountId: required; "
        "ids: must be an array of Ids; properties: must be an array of Strings",
        "arguments": ["bogus", "accountId", "ids", "properties"],
    }


def test_get_ids_must_be_ids() -> None:
    error = invalid(parse_get, {"accountId": "A1", "ids": ["ok", "not ok"]}, 10)
    assert error.extra == {"arguments": ["ids"]}


def test_get_too_many_ids_is_request_too_large() -> None:
    with pytest.raises(MethodError) as caught:
        parse_get({"accountId": "A1", "ids": ["a", "b", "c"]}, 2)
    assert caught.value.type == "requestTooLarge"
    assert parse_get({"accountId": "A1", "ids": ["a", "b"]}, 2).ids == ["a", "b"]


def test_extra_arguments_are_allowed_when_named() -> None:
    args = {"accountId": "A1", "fetchHTMLBodyValues": True}
    assert parse_get(args, 10, extra={"fetchHTMLBodyValues"}) == GetArgs("A1", None, None)
    assert invalid(parse_get, args, 10).extra == {"arguments": ["fetchHTMLBodyValues"]}


def test_changes() -> None:
    assert parse_changes({"accountId": "A1", "sinceState": "s1"}) == ChangesArgs("A1", "s1", None)
    args = {"accountId": "A1", "sinceState": "s1", "maxChanges": 50}
    assert parse_changes(args) == ChangesArgs("A1", "s1", 50)


@pytest.mark.parametrize("max_changes", [0, -1, 1.5, "5", True])
def test_changes_max_changes_must_be_positive(max_changes: Any) -> None:
    args = {"accountId": "A1", "sinceState": "s1", "maxChanges": max_changes}
    assert invalid(parse_changes, args).extra == {"arguments": ["maxChanges"]}


def test_changes_since_state_required() -> None:
    error = invalid(parse_changes, {"accountId": "A1", "sinceState": None})
    assert error.description == "sinceState: must be a String"


def test_set() -> None:
    args = {
        "accountId": "A1",
        "ifInState": "s1",
        "create": {"k1": {"name": "x"}},
        "update": {"M1": {"name": "y"}},
        "destroy": ["M2"],
    }
    assert parse_set(args, 3) == SetArgs(
        "A1", "s1", {"k1": {"name": "x"}}, {"M1": {"name": "y"}}, ["M2"]
    )
    assert parse_set({"accountId": "A1", "create": None}, 3) == SetArgs(
        "A1", None, None, None, None
    )


def test_set_counts_create_update_destroy_together() -> None:
    args = {"accountId": "A1", "create": {"k1": {}}, "update": {"M1": {}}, "destroy": ["M2"]}
    with pytest.raises(MethodError) as caught:
        parse_set(args, 2)
    assert caught.value.to_arguments() == {
        "type": "requestTooLarge",
        "description": "More than 2 objects to change",
    }


def test_set_shapes() -> None:
    args = {
        "accountId": "A1",
        "ifInState": 3,
        "create": {"k1": []},
        "update": {"bad id": {}},
        "destroy": "M1",
    }
    error = invalid(parse_set, args, 10)
    assert error.description == (
        "ifInState: must be a String; create: value of 'k1' must be an object; "
        "update: key 'bad id' is not an Id or #creationId; "
        "destroy: must be an array of Ids or #creationIds"
    )


def test_set_update_and_destroy_may_reference_creations() -> None:
    """RFC 8620 5.3: a record created earlier in the request is named by #creationId."""
    args = {"accountId": "A1", "update": {"#k1": {"name": "y"}}, "destroy": ["#k2", "M1"]}
    parsed = parse_set(args, 10)
    assert parsed.update == {"#k1": {"name": "y"}}
    assert parsed.destroy == ["#k2", "M1"]
    error = invalid(parse_set, {"accountId": "A1", "create": {"#k1": {}}, "destroy": ["#"]}, 10)
    assert error.description == (
        "create: key '#k1' is not an Id; destroy: must be an array of Ids or #creationIds"
    )


def test_copy() -> None:
    args = {"fromAccountId": "A1", "accountId": "A2", "create": {"k1": {"id": "M1"}}}
    assert parse_copy(args, 10) == CopyArgs(
        "A1", None, "A2", None, {"k1": {"id": "M1"}}, False, None
    )


def test_copy_needs_two_accounts_and_create() -> None:
    error = invalid(parse_copy, {"fromAccountId": "A1", "accountId": "A1"}, 10)
    assert error.extra == {"arguments": ["create", "accountId"]}


def test_copy_too_large() -> None:
    args = {"fromAccountId": "A1", "accountId": "A2", "create": {"k1": {}, "k2": {}}}
    with pytest.raises(MethodError) as caught:
        parse_copy(args, 1)
    assert caught.value.type == "requestTooLarge"


def test_query_defaults() -> None:
    assert parse_query({"accountId": "A1"}) == QueryArgs("A1", None, None, 0, None, 0, None, False)


def test_query_full() -> None:
    args: dict[str, Any] = {
        "accountId": "A1",
        "filter": {"operator": "OR", "conditions": [{"hasKeyword": "music"}, {"text": "x"}]},
        "sort": [
            {"property": "title"},
            {"property": "receivedAt", "isAscending": False, "collation": "i;ascii-casemap"},
            {"property": "hasKeyword", "keyword": "$flagged"},
        ],
        "position": -5,
        "anchor": "M1",
        "anchorOffset": -1,
        "limit": 10,
        "calculateTotal": True,
    }
    assert parse_query(args) == QueryArgs(
        account_id="A1",
        filter=args["filter"],
        sort=[
            Comparator("title"),
            Comparator("receivedAt", False, "i;ascii-casemap"),
            Comparator("hasKeyword", extra={"keyword": "$flagged"}),
        ],
        position=-5,
        anchor="M1",
        anchor_offset=-1,
        limit=10,
        calculate_total=True,
    )


def test_query_negative_limit_is_invalid() -> None:
    error = invalid(parse_query, {"accountId": "A1", "limit": -1})
    assert error.description == "limit: must be an UnsignedInt"


def test_query_null_for_non_nullable_is_invalid() -> None:
    args = {"accountId": "A1", "position": None, "calculateTotal": None}
    assert invalid(parse_query, args).extra == {"arguments": ["position", "calculateTotal"]}


@pytest.mark.parametrize(
    ("sort", "reason"),
    [
        ({"property": "x"}, "must be an array of Comparators"),
        (["x"], "comparator 0 must be an object"),
        ([{"property": "a"}, {"isAscending": True}], "comparator 1: property must be a String"),
        ([{"property": "a", "isAscending": "no"}], "comparator 0: isAscending must be a Boolean"),
        ([{"property": "a", "collation": 1}], "comparator 0: collation must be a String"),
    ],
)
def test_query_sort_shape(sort: Any, reason: str) -> None:
    error = invalid(parse_query, {"accountId": "A1", "sort": sort})
    assert error.description == f"sort: {reason}"


@pytest.mark.parametrize(
    ("filter_", "reason"),
    [
        ([], "must be a FilterOperator or FilterCondition object"),
        ({"operator": "XOR", "conditions": []}, "operator must be AND, OR or NOT"),
        ({"operator": "AND"}, "conditions must be an array"),
        (
            {"operator": "AND", "conditions": [{"operator": "NOT", "conditions": [5]}]},
            "must be a FilterOperator or FilterCondition object",
        ),
    ],
)
def test_query_filter_shape(filter_: Any, reason: str) -> None:
    error = invalid(parse_query, {"accountId": "A1", "filter": filter_})
    assert error.description == f"filter: {reason}"


def test_query_changes() -> None:
    args = {"accountId": "A1", "sinceQueryState": "q1", "maxChanges": 0, "upToId": "M9"}
    assert parse_query_changes(args) == QueryChangesArgs("A1", None, None, "q1", 0, "M9", False)
    error = invalid(parse_query_changes, {"accountId": "A1", "upToId": ""})
    assert error.extra == {"arguments": ["sinceQueryState", "upToId"]}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (-5, -5), (7.0, 7), (MAX_INT, MAX_INT), (-MAX_INT, -MAX_INT)],
)
def test_int_accepts(value: Any, expected: int) -> None:
    assert as_int(value) == expected
    assert type(as_int(value)) is int


@pytest.mark.parametrize("value", [True, False, None, "1", 1.5, MAX_INT + 1, -MAX_INT - 1, [1]])
def test_int_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match="must be an Int"):
        as_int(value)


def test_unsigned_int_range() -> None:
    assert as_unsigned_int(MAX_INT) == MAX_INT
    with pytest.raises(ValueError, match="must be an UnsignedInt"):
        as_unsigned_int(-1)


def test_arg_reader_for_type_specific_arguments() -> None:
    reader = ArgReader({"accountId": "A1", "x": 1}, allowed={"accountId", "x", "y"})
    assert reader.optional("y", as_int, 42) == 42
    assert reader.required("x", as_int) == 1
    reader.reject("x", "must be even")
    error = invalid(reader.finish)
    assert error.description == "x: must be even"


def test_check_if_in_state() -> None:
    check_if_in_state(None, "s2")
    check_if_in_state("s2", "s2")
    with pytest.raises(MethodError) as caught:
        check_if_in_state("s1", "s2")
    assert caught.value.to_arguments() == {
        "type": "stateMismatch",
        "description": "ifInState 's1' is not the current state 's2'",
    }
