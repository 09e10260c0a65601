"""Result references (RFC 8620 3.7): the RFC's examples, "*" mapping and every failure."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.jmap.errors import MethodError
from gateway.jmap.protocol import Invocation
from gateway.jmap.references import resolve_arguments

CHANGES = Invocation(
    "Foo/changes",
    {
        "accountId": "A1",
        "oldState": "abcdef",
        "newState": "123456",
        "hasMoreChanges": False,
        "created": ["f1", "f4"],
        "updated": [],
        "destroyed": [],
    },
    "t0",
)

# RFC 8620 3.7, second example: the responses after the first three calls.
MAIL_RESPONSES = [
    Invocation(
        "Email/query",
        {
            "accountId": "A1",
            "queryState": "abcdefg",
            "canCalculateChanges": True,
            "position": 0,
            "total": 101,
            "ids": ["msg1023", "msg223", "msg110"],
        },
        "t0",
    ),
    Invocation(
        "Email/get",
        {
            "accountId": "A1",
            "state": "123456",
            "list": [
                {"id": "msg1023", "threadId": "trd194"},
                {"id": "msg223", "threadId": "trd114"},
            ],
            "notFound": [],
        },
        "t1",
    ),
    Invocation(
        "Thread/get",
        {
            "accountId": "A1",
            "state": "123456",
            "list": [
                {"id": "trd194", "emailIds": ["msg1020", "msg1021", "msg1023"]},
                {"id": "trd114", "emailIds": ["msg201", "msg223"]},
            ],
            "notFound": [],
        },
        "t2",
    ),
]


# The request-size limit references are held to; these values are far smaller.
MAX_SIZE = 10_000_000


def ref(result_of: str, name: str, path: str) -> dict[str, str]:
    return {"resultOf": result_of, "name": name, "path": path}


def resolve_ids(reference: Any, previous: list[Invocation]) -> Any:
    return resolve_arguments({"accountId": "A1", "#ids": reference}, previous, MAX_SIZE)["ids"]


def failure(reference: Any, previous: list[Invocation]) -> MethodError:
    with pytest.raises(MethodError) as caught:
        resolve_ids(reference, previous)
    assert caught.value.type == "invalidResultReference"
    return caught.value


def test_rfc_simple_example() -> None:
    arguments = {"accountId": "A1", "#ids": ref("t0", "Foo/changes", "/created")}
    assert resolve_arguments(arguments, [CHANGES], MAX_SIZE) == {
        "accountId": "A1",
        "ids": ["f1", "f4"],
    }


def test_arguments_are_not_modified() -> None:
    arguments = {"accountId": "A1", "#ids": ref("t0", "Foo/changes", "/created")}
    resolve_arguments(arguments, [CHANGES], MAX_SIZE)
    assert "#ids" in arguments
    assert "ids" not in arguments


def test_arguments_without_references_are_copied() -> None:
    arguments = {"accountId": "A1", "ids": None}
    resolved = resolve_arguments(arguments, [], MAX_SIZE)
    assert resolved == arguments
    assert resolved is not arguments


def test_rfc_query_ids_example() -> None:
    ids = resolve_ids(ref("t0", "Email/query", "/ids"), MAIL_RESPONSES)
    assert ids == ["msg1023", "msg223", "msg110"]


def test_rfc_star_maps_over_array() -> None:
    ids = resolve_ids(ref("t1", "Email/get", "/list/*/threadId"), MAIL_RESPONSES)
    assert ids == ["trd194", "trd114"]


def test_rfc_star_flattens_arrays() -> None:
    ids = resolve_ids(ref("t2", "Thread/get", "/list/*/emailIds"), MAIL_RESPONSES)
    assert ids == ["msg1020", "msg1021", "msg1023", "msg201", "msg223"]


def test_star_flattens_one_level_only() -> None:
    response = Invocation("X/get", {"a": [{"b": [[1, 2], [3]]}, {"b": [[4]]}]}, "c")
    assert resolve_ids(ref("c", "X/get", "/a/*/b"), [response]) == [[1, 2], [3], [4]]


def test_nested_stars() -> None:
    response = Invocation("X/get", {"a": [{"b": [{"c": 1}, {"c": 2}]}, {"b": [{"c": 3}]}]}, "c")
    assert resolve_ids(ref("c", "X/get", "/a/*/b/*/c"), [response]) == [1, 2, 3]


def test_star_on_empty_array_and_at_end() -> None:
    response = Invocation("X/get", {"empty": [], "flat": [1, 2]}, "c")
    assert resolve_ids(ref("c", "X/get", "/empty/*/x"), [response]) == []
    assert resolve_ids(ref("c", "X/get", "/flat/*"), [response]) == [1, 2]


def test_star_on_object_is_a_member_name() -> None:
    response = Invocation("X/get", {"o": {"*": "star"}}, "c")
    assert resolve_ids(ref("c", "X/get", "/o/*"), [response]) == "star"


def test_tilde_escapes() -> None:
    response = Invocation("X/get", {"a/b": 1, "m~n": 2, "~1": 3}, "c")
    assert resolve_ids(ref("c", "X/get", "/a~1b"), [response]) == 1
    assert resolve_ids(ref("c", "X/get", "/m~0n"), [response]) == 2
    # ~01 is "~" then "1", never "/".
    assert resolve_ids(ref("c", "X/get", "/~01"), [response]) == 3


def test_empty_path_is_the_whole_arguments_object() -> None:
    assert resolve_ids(ref("t0", "Foo/changes", ""), [CHANGES]) == CHANGES.arguments


def test_array_index() -> None:
    assert resolve_ids(ref("t0", "Foo/changes", "/created/1"), [CHANGES]) == "f4"


def test_index_out_of_range() -> None:
    error = failure(ref("t0", "Foo/changes", "/created/2"), [CHANGES])
    assert error.description == "#ids: index 2 is out of range at /created (length 2)"


@pytest.mark.parametrize("segment", ["-", "01", "-1", "1.0", "x", "\u0661"])
def test_bad_array_indices(segment: str) -> None:
    error = failure(ref("t0", "Foo/changes", f"/created/{segment}"), [CHANGES])
    assert error.description == f"#ids: {segment!r} is not an array index at /created"


def test_missing_member_names_location_through_star() -> None:
    response = Invocation("X/get", {"list": [{"a": 1}, {"b": 2}]}, "c")
    error = failure(ref("c", "X/get", "/list/*/a"), [response])
    assert error.description == "#ids: no member 'a' at /list/1"


def test_missing_member_at_root() -> None:
    error = failure(ref("t0", "Foo/changes", "/nope"), [CHANGES])
    assert error.description == "#ids: no member 'nope' at the root"


def test_cannot_descend_into_scalar() -> None:
    error = failure(ref("t0", "Foo/changes", "/oldState/x"), [CHANGES])
    assert error.description == "#ids: cannot descend into a string at /oldState"


@pytest.mark.parametrize("path", ["created", "/created/~2", "/created~"])
def test_malformed_pointer(path: str) -> None:
    error = failure(ref("t0", "Foo/changes", path), [CHANGES])
    assert error.description == f"#ids: {path!r} is not a JSON Pointer"


def test_name_mismatch() -> None:
    error = failure(ref("t0", "Foo/get", "/created"), [CHANGES])
    assert error.description == "#ids: the response to 't0' is 'Foo/changes', not 'Foo/get'"


def test_missing_result_of() -> None:
    error = failure(ref("t9", "Foo/changes", "/created"), [CHANGES])
    assert error.description == "#ids: no earlier response to 't9'"


def test_first_response_with_the_call_id_is_used() -> None:
    # A call may emit several responses; the first one is the one referenced.
    implicit = Invocation("Foo/set", {"destroyed": ["x"]}, "t0")
    error = failure(ref("t0", "Foo/set", "/destroyed"), [CHANGES, implicit])
    assert error.description == "#ids: the response to 't0' is 'Foo/changes', not 'Foo/set'"


def test_reference_to_an_error_response_fails() -> None:
    error_response = Invocation("error", {"type": "unknownMethod"}, "t0")
    error = failure(ref("t0", "Foo/changes", "/created"), [error_response])
    assert error.description == "#ids: the response to 't0' is 'error', not 'Foo/changes'"


@pytest.mark.parametrize(
    "reference",
    [
        "t0",
        ["t0", "Foo/changes", "/created"],
        {"resultOf": "t0", "name": "Foo/changes"},
        {"resultOf": "t0", "name": 1, "path": "/created"},
        {"resultOf": None, "name": "Foo/changes", "path": "/created"},
    ],
)
def test_malformed_reference_objects(reference: Any) -> None:
    error = failure(reference, [CHANGES])
    assert error.description is not None
    assert error.description.startswith("#ids: a ResultReference")


def test_both_plain_and_referenced_argument_is_invalid_arguments() -> None:
    arguments = {"ids": ["a"], "#ids": ref("t0", "Foo/changes", "/created")}
    with pytest.raises(MethodError) as caught:
        resolve_arguments(arguments, [CHANGES], MAX_SIZE)
    assert caught.value.to_arguments() == {
        "type": "invalidArguments",
        "description": "ids and #ids are both given",
        "arguments": ["ids"],
    }


def test_several_references_in_one_call() -> None:
    arguments = {
        "#ids": ref("t2", "Thread/get", "/list/*/id"),
        "#state": ref("t2", "Thread/get", "/state"),
    }
    assert resolve_arguments(arguments, MAIL_RESPONSES, MAX_SIZE) == {
        "ids": ["trd194", "trd114"],
        "state": "123456",
    }
