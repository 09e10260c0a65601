"""Result references: "#name" arguments taken from earlier responses (RFC 8620 3.7).

Resolution is pure: it reads the responses emitted so far and returns new arguments,
so a failed reference leaves nothing half-applied.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.jmap.errors import MethodError
from gateway.jmap.protocol import Invocation, JsonObject

# RFC 6901 4: an array index is "0" or digits without a leading zero ("-" is not allowed).
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
# RFC 6901 3: "~" may only be followed by "0" or "1".
_BAD_ESCAPE = re.compile(r"~(?![01])")


def resolve_arguments(
    arguments: JsonObject, previous: Sequence[Invocation], max_size: int
) -> JsonObject:
    """Return a copy of `arguments` with every "#name" replaced by "name" and its value.

    Resolved values are shared with the earlier response, so handlers must treat their
    arguments as read-only. Together they may take at most ``max_size`` octets as JSON (the
    request's own size limit: arguments a client could not send inline cannot be had by
    reference either); past it the call is requestTooLarge. A value can be far larger than
    the response it comes from once repeated (two references to one response double it),
    so each is measured as it resolves, and at most one value beyond the limit is encoded.
    """
    resolved: JsonObject = {}
    size = 0
    for key, value in arguments.items():
        if not key.startswith("#"):
            resolved[key] = value
            continue
        name = key[1:]
        # RFC 8620 3.7: the same argument in normal and referenced form is invalidArguments.
        if name in arguments:
            raise MethodError.invalid_arguments(
                f"{name} and #{name} are both given", arguments=[name]
            )
        resolved[name] = _resolve_reference(value, previous, key)
        size += len(orjson.dumps(resolved[name]))
        if size > max_size:
            raise MethodError(
                "requestTooLarge",
                f"The arguments resolved from result references are larger than {max_size} octets.",
            )
    return resolved


def _resolve_reference(reference: object, previous: Sequence[Invocation], key: str) -> Any:
    """Evaluate one ResultReference; any failure is invalidResultReference (RFC 8620 3.7)."""
    try:
        result_of, name, path = _reference_fields(reference)
        response = _find_response(result_of, previous)
        if response.name != name:
            raise _Unresolvable(f"the response to {result_of!r} is {response.name!r}, not {name!r}")
        return _evaluate_path(response.arguments, path)
    except _Unresolvable as exc:
        raise MethodError.invalid_result_reference(f"{key}: {exc}") from None


class _Unresolvable(Exception):
    """Why a reference failed; `_resolve_reference` names the argument and converts it."""


def _reference_fields(reference: object) -> tuple[str, str, str]:
    """A ResultReference has String resultOf, name and path."""
    if not isinstance(reference, dict):
        raise _Unresolvable("a ResultReference must be an object")
    result_of = reference.get("resultOf")
    name = reference.get("name")
    path = reference.get("path")
    if not (isinstance(result_of, str) and isinstance(name, str) and isinstance(path, str)):
        raise _Unresolvable("a ResultReference needs string resultOf, name and path")
    return result_of, name, path


def _find_response(result_of: str, previous: Sequence[Invocation]) -> Invocation:
    """RFC 8620 3.7 step 1: the FIRST response whose method call id is resultOf."""
    for response in previous:
        if response.call_id == result_of:
            return response
    raise _Unresolvable(f"no earlier response to {result_of!r}")


def _evaluate_path(document: Any, path: str) -> Any:
    """Apply a JSON Pointer (RFC 6901) extended with "*" over arrays (RFC 8620 3.7 step 3)."""
    if path == "":
        return document
    if not path.startswith("/") or _BAD_ESCAPE.search(path):
        raise _Unresolvable(f"{path!r} is not a JSON Pointer")
    segments = [_unescape(segment) for segment in path[1:].split("/")]
    return _evaluate(document, segments, 0, "")


def _unescape(segment: str) -> str:
    """RFC 6901 4: "~1" becomes "/" first, then "~0" becomes "~"."""
    return segment.replace("~1", "/").replace("~0", "~")


def _escape(segment: str) -> str:
    """Inverse of `_unescape`, to quote the failing location back in pointer syntax."""
    return segment.replace("~", "~0").replace("/", "~1")


def _evaluate(value: Any, segments: list[str], start: int, where: str) -> Any:
    """Follow segments[start:]; recursion happens only at "*", one level per array mapped."""
    for index in range(start, len(segments)):
        segment = segments[index]
        if segment == "*" and isinstance(value, list):
            return _map_array(value, segments, index + 1, where)
        value = _step(value, segment, where)
        where = f"{where}/{_escape(segment)}"
    return value


def _map_array(items: list[Any], segments: list[str], start: int, where: str) -> list[Any]:
    """RFC 8620 3.7: "*" applies the rest to every item; array results are flattened."""
    mapped: list[Any] = []
    for position, item in enumerate(items):
        result = _evaluate(item, segments, start, f"{where}/{position}")
        if isinstance(result, list):
            mapped.extend(result)
        else:
            mapped.append(result)
    return mapped


def _step(value: Any, segment: str, where: str) -> Any:
    """Descend one reference token (RFC 6901) into an object or an array."""
    location = where or "the root"
    if isinstance(value, dict):
        if segment not in value:
            raise _Unresolvable(f"no member {segment!r} at {location}")
        return value[segment]
    if isinstance(value, list):
        return value[_array_index(segment, len(value), location)]
    raise _Unresolvable(f"cannot descend into a {_json_type(value)} at {location}")


def _array_index(segment: str, length: int, location: str) -> int:
    """RFC 6901 4: a non-negative index without leading zeros that exists in the array."""
    if not _ARRAY_INDEX.fullmatch(segment):
        raise _Unresolvable(f"{segment!r} is not an array index at {location}")
    index = int(segment)
    if index >= length:
        raise _Unresolvable(f"index {index} is out of range at {location} (length {length})")
    return index


def _json_type(value: Any) -> str:
    """Name a JSON scalar's type for error descriptions."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    return "number"
