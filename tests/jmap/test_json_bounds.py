"""A request body is measured before it is built: too many values or too deep nesting is
notJSON (RFC 8259 9 lets a parser limit both) at the cost of a few passes over its octets.

The hostile review's 9.6 MB body of nested arrays took 6 s of the event loop: a Python walk
over its 4.6 million arrays after orjson had built them. The tests assert on memory (what
was built), never on time: building those arrays takes hundreds of MiB.
"""

from __future__ import annotations

import contextlib
import tracemalloc
from typing import Any

import httpx
import orjson
import pytest

from gateway.jmap.capabilities import CORE, CoreLimits
from gateway.jmap.errors import RequestError
from gateway.jmap.protocol import MAX_JSON_DEPTH, MAX_JSON_VALUES, parse_request

JSON = "application/json"


def request(arguments: bytes) -> bytes:
    return b'{"using":["%s"],"methodCalls":[["Core/echo",%s,"c0"]]}' % (CORE.encode(), arguments)


def parse(body: bytes) -> Any:
    return parse_request(body, JSON, CoreLimits(), [CORE])


def refused(body: bytes) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse(body)
    return caught.value


def peak_mib(body: bytes) -> float:
    """The most memory parsing ``body`` held at once, in MiB (the body itself excluded)."""
    tracemalloc.start()
    with contextlib.suppress(RequestError):
        parse(body)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


# The review's shape: 9.6 MB of arrays 126 deep, next to each other.
NESTED = request(b'{"a":[' + (b"[" * 126 + b"]" * 126 + b",") * 37_000 + b"0]}")


def test_the_reviews_nested_arrays_are_refused_before_they_are_built() -> None:
    assert len(NESTED) > 9_000_000
    error = refused(NESTED)
    assert (error.type, error.detail) == (
        "notJSON",
        f"The request holds more than {MAX_JSON_VALUES} values.",
    )
    # orjson would build 4.6 million lists (over 300 MiB); the scan copies the octets a few
    # times at most.
    assert peak_mib(NESTED) < 64


@pytest.mark.parametrize(
    "arguments",
    [
        b'{"a":[' + b"[]," * 3_000_000 + b"0]}",
        b'{"a":[' + b"1," * 4_000_000 + b"0]}",
        b'{"a":[' + b'{"k":1},' * 1_000_000 + b"0]}",
    ],
    ids=["empty-arrays", "numbers", "objects"],
)
def test_millions_of_values_are_not_json(arguments: bytes) -> None:
    assert refused(request(arguments)).type == "notJSON"
    assert peak_mib(request(arguments)) < 64


def test_values_up_to_the_limit_are_accepted() -> None:
    # Each "1," is one value; the envelope holds eight more ("[", "{", "," and ":").
    fits = request(b'{"a":[' + b"1," * (MAX_JSON_VALUES - 12) + b"0]}")
    assert len(parse(fits).method_calls) == 1
    over = request(b'{"a":[' + b"1," * MAX_JSON_VALUES + b"0]}")
    assert refused(over).type == "notJSON"


@pytest.mark.parametrize(
    "raw",
    [
        b"[{,:" * 1_000_000,
        b'\\"[' * 500_000,
        b"\\\\" * 500_000 + b'", "b": "' + b"[{" * 500_000,
        "\u00e9[\U0001f600{".encode() * 300_000,
    ],
    ids=["structural", "escaped-quotes", "escaped-backslashes", "non-ascii"],
)
def test_brackets_inside_strings_are_not_values(raw: bytes) -> None:
    """Strings are skipped exactly, escapes included: were one quote taken for the end of a
    string, the brackets after it would count as a million values and be refused."""
    body = request(b'{"a":"' + raw + b'"}')
    assert parse(body).method_calls[0].arguments == orjson.loads(body)["methodCalls"][0][1]


def test_depth_is_measured_outside_strings() -> None:
    deep = b"[" * (MAX_JSON_DEPTH - 4) + b"]" * (MAX_JSON_DEPTH - 4)
    text = b'"' + b"[" * 10_000 + b'"'
    assert len(parse(request(b'{"a":' + deep + b',"b":' + text + b"}")).method_calls) == 1
    error = refused(request(b'{"a":[' + deep + b"]}"))
    assert error.detail == f"The request nests deeper than {MAX_JSON_DEPTH} levels."


def test_invalid_json_stays_not_json() -> None:
    for body in (b'{"using": ["a"', b'{"a": "\\"}', b"[[[" * 100, b'{"a":"x""y"}'):
        assert refused(body).type == "notJSON"


async def test_the_gateway_answers_the_nested_arrays_with_not_json(
    http: httpx.AsyncClient, alice: httpx.BasicAuth
) -> None:
    headers = {"content-type": JSON}
    response = await http.post("/jmap/api/", content=NESTED, auth=alice, headers=headers)
    assert response.status_code == 400
    assert response.json()["type"] == "urn:ietf:params:jmap:error:notJSON"
    echo = request(b'{"still":"here"}')
    answer = await http.post("/jmap/api/", content=echo, auth=alice, headers=headers)
    assert answer.json()["methodResponses"] == [["Core/echo", {"still": "here"}, "c0"]]
