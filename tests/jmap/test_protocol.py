"""Request parsing: every request-level error of RFC 8620 3.6.1, and what is accepted."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.jmap.capabilities import CORE, MAIL, CoreLimits
from gateway.jmap.errors import RequestError
from gateway.jmap.protocol import (
    MAX_JSON_DEPTH,
    Invocation,
    Request,
    is_valid_id,
    parse_request,
)

LIMITS = CoreLimits(max_size_request=10_000, max_calls_in_request=4)
KNOWN = {CORE, MAIL}
JSON = "application/json"


def body(**document: Any) -> bytes:
    return orjson.dumps(document)


def valid(**overrides: Any) -> bytes:
    document: dict[str, Any] = {"using": [CORE], "methodCalls": [["Core/echo", {"a": 1}, "c1"]]}
    document.update(overrides)
    return orjson.dumps(document)


def parse(raw: bytes, content_type: str | None = JSON) -> Request:
    return parse_request(raw, content_type, LIMITS, KNOWN)


def rejected(raw: bytes, content_type: str | None = JSON) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse(raw, content_type)
    return caught.value


def test_valid_request_is_parsed() -> None:
    request = parse(valid(using=[CORE, MAIL], createdIds={"k1": "M1"}))
    assert request == Request(
        using=frozenset({CORE, MAIL}),
        method_calls=[Invocation("Core/echo", {"a": 1}, "c1")],
        created_ids={"k1": "M1"},
        limits=LIMITS,
    )


def test_invocation_to_json_is_a_triple() -> None:
    assert Invocation("Core/echo", {"a": 1}, "c1").to_json() == ["Core/echo", {"a": 1}, "c1"]


def test_unknown_top_level_property_is_ignored() -> None:
    request = parse(valid(somethingNew={"x": 1}))
    assert request.method_calls == [Invocation("Core/echo", {"a": 1}, "c1")]


def test_absent_and_null_created_ids_both_mean_none() -> None:
    assert parse(valid()).created_ids is None
    assert parse(valid(createdIds=None)).created_ids is None
    assert parse(valid(createdIds={})).created_ids == {}


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        'application/json; charset="utf-8"',
        "application/json; foo=bar",
    ],
)
def test_accepted_content_types(content_type: str) -> None:
    assert parse(valid(), content_type).using == frozenset({CORE})


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/jsonx", "application/json; charset=iso-8859-1", ""],
)
def test_other_content_types_are_not_json(content_type: str | None) -> None:
    error = rejected(valid(), content_type)
    assert error.type == "notJSON"
    assert error.status == 400


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"not json",
        b'{"using": [], "methodCalls": [],}',
        b'{"using": ["\xff"], "methodCalls": []}',
        b'{"using": ["\\ud800"], "methodCalls": []}',
        b'{"using": [], "methodCalls": [], "n": NaN}',
        b"\xef\xbb\xbf{}",
    ],
    ids=[
        "empty",
        "truncated",
        "text",
        "trailing-comma",
        "bad-utf8",
        "lone-surrogate",
        "nan",
        "bom",
    ],
)
def test_invalid_json_is_not_json(raw: bytes) -> None:
    assert rejected(raw).to_problem()["type"] == "urn:ietf:params:jmap:error:notJSON"


def test_deep_nesting_is_not_json_without_recursion_error() -> None:
    raw = b'{"using": [], "methodCalls": [["Core/echo", {"a": ' + b"[" * 100_000
    raw += b"]" * 100_000 + b'}, "c1"]]}'
    limits = CoreLimits(max_size_request=1_000_000)
    with pytest.raises(RequestError) as caught:
        parse_request(raw, JSON, limits, KNOWN)
    assert caught.value.type == "notJSON"


def test_nesting_up_to_the_depth_limit_is_accepted() -> None:
    # The request object, methodCalls, the invocation and the arguments take four levels.
    nested = b"[" * (MAX_JSON_DEPTH - 4) + b"]" * (MAX_JSON_DEPTH - 4)
    raw = b'{"using": [], "methodCalls": [["Core/echo", {"a": ' + nested + b'}, "c1"]]}'
    assert len(parse(raw).method_calls) == 1
    deeper = b'{"using": [], "methodCalls": [["Core/echo", {"a": [' + nested + b']}, "c1"]]}'
    error = rejected(deeper)
    assert error.type == "notJSON"
    assert error.detail == f"The request nests deeper than {MAX_JSON_DEPTH} levels."


def test_depth_limit_keeps_responses_encodable() -> None:
    nested: Any = []
    for _ in range(MAX_JSON_DEPTH + 3):
        nested = [nested]
    orjson.dumps({"methodResponses": [["Core/echo", {"a": nested}, "c1"]]})


def test_huge_body_is_limit_max_size_request() -> None:
    raw = valid(methodCalls=[["Core/echo", {"pad": "x" * 10_000}, "c1"]])
    error = rejected(raw)
    assert error.to_problem() == {
        "type": "urn:ietf:params:jmap:error:limit",
        "status": 400,
        "detail": "The request is larger than 10000 octets.",
        "limit": "maxSizeRequest",
    }


def test_size_limit_is_checked_before_parsing() -> None:
    assert rejected(b"x" * 10_001).type == "limit"


def test_too_many_calls_is_limit_max_calls_in_request() -> None:
    calls = [["Core/echo", {}, f"c{n}"] for n in range(5)]
    error = rejected(valid(methodCalls=calls))
    assert error.type == "limit"
    assert error.limit == "maxCallsInRequest"
    assert len(parse(valid(methodCalls=calls[:4])).method_calls) == 4


def test_unknown_capability_is_named() -> None:
    error = rejected(valid(using=[CORE, "https://example.com/apis/foobar"]))
    assert error.to_problem() == {
        "type": "urn:ietf:params:jmap:error:unknownCapability",
        "status": 400,
        "detail": "The Request object used capability 'https://example.com/apis/foobar', "
        "which is not supported by this server.",
    }


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"[]", "The request must be a JSON object."),
        (b'"text"', "The request must be a JSON object."),
        (body(methodCalls=[]), "using is required."),
        (body(using=[]), "methodCalls is required."),
        (valid(using=CORE), "using must be an array of strings."),
        (valid(using=[CORE, 5]), "using[1] must be a string."),
        (valid(methodCalls={}), "methodCalls must be an array."),
        (
            valid(methodCalls=[["a", {}, "c1"], "x"]),
            "methodCalls[1] must be an array of 3 elements.",
        ),
        (valid(methodCalls=[["a", {}]]), "methodCalls[0] must be an array of 3 elements."),
        (valid(methodCalls=[["a", {}, "c", 1]]), "methodCalls[0] must be an array of 3 elements."),
        (valid(methodCalls=[[1, {}, "c1"]]), "methodCalls[0][0] must be a string."),
        (
            valid(methodCalls=[["a", {}, "1"], ["a", {}, "2"], ["a", [], "3"]]),
            "methodCalls[2][1] must be an object.",
        ),
        (valid(methodCalls=[["a", None, "c1"]]), "methodCalls[0][1] must be an object."),
        (valid(methodCalls=[["a", {}, 7]]), "methodCalls[0][2] must be a string."),
        (valid(createdIds=[]), "createdIds must be an object."),
        (valid(createdIds={"k1": 5}), "createdIds['k1'] must be an Id."),
        (valid(createdIds={"k1": "bad id"}), "createdIds['k1'] must be an Id."),
        (valid(createdIds={"#k1": "M1"}), "createdIds key '#k1' is not an Id."),
    ],
)
def test_signature_violations_are_not_request(raw: bytes, detail: str) -> None:
    error = rejected(raw)
    assert (error.type, error.detail, error.status) == ("notRequest", detail, 400)


def test_empty_method_calls_is_a_valid_request() -> None:
    assert parse(valid(methodCalls=[])).method_calls == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a", True),
        ("Az09_-", True),
        ("x" * 255, True),
        ("", False),
        ("x" * 256, False),
        ("a b", False),
        ("a=", False),
        ("a\n", False),
        ("é", False),
        ("a/b", False),
    ],
)
def test_is_valid_id(value: str, expected: bool) -> None:
    assert is_valid_id(value) is expected
