"""Request and Invocation shapes, and the request parser (RFC 8620 3.2-3.3, 3.6.1).

`parse_request` turns raw bytes into a `Request` or raises a `RequestError`; nothing
past it ever sees a body that does not match the Request type signature.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import orjson

from gateway.jmap.capabilities import CoreLimits
from gateway.jmap.errors import RequestError

JsonObject = dict[str, Any]

# RFC 8259 9 lets a parser limit the depth of nesting and the size of the texts it accepts;
# past either limit a request is notJSON. Deeper documents are refused: orjson's encoder
# stops at 254 levels and a response nests arguments as deep as the request did, so this
# keeps every echoed or referenced value encodable with room to spare; real requests stay
# far below it.
MAX_JSON_DEPTH = 128
# At most this many values and member names (counted as the "[", "{", "," and ":" outside
# strings). Building a value costs orjson a fraction of a microsecond, in one call that holds
# the interpreter: 10 MB of "[]," is five million lists and a second of every user's time.
# 500 Email/set creates with every property hold about 30,000.
MAX_JSON_VALUES = 200_000

# RFC 8620 1.2: an Id is 1-255 octets from the URL-safe base64 alphabet.
_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")


def is_valid_id(value: str) -> bool:
    """Tell whether `value` is a JMAP Id (RFC 8620 1.2)."""
    return _ID.fullmatch(value) is not None


@dataclass(frozen=True)
class Invocation:
    """A method call or response: [name, arguments, method call id] (RFC 8620 3.2)."""

    name: str
    arguments: JsonObject
    call_id: str

    def to_json(self) -> list[Any]:
        """Return the wire form, a three-element array."""
        return [self.name, self.arguments, self.call_id]


@dataclass(frozen=True)
class Request:
    """A Request object that matched its type signature (RFC 8620 3.3)."""

    using: frozenset[str]
    method_calls: list[Invocation]
    created_ids: dict[str, str] | None
    # The limits it was parsed under, which its processing is held to as well.
    limits: CoreLimits = field(default_factory=CoreLimits)


def parse_request(
    body: bytes,
    content_type: str | None,
    limits: CoreLimits,
    known_capabilities: Collection[str],
) -> Request:
    """Validate an API request body; raise RequestError describing the first problem."""
    _check_content_type(content_type)
    if len(body) > limits.max_size_request:
        raise RequestError.limit_exceeded(
            "maxSizeRequest",
            f"The request is larger than {limits.max_size_request} octets.",
        )
    return request_from_document(load_json(body), limits, known_capabilities)


def request_from_document(
    document: object, limits: CoreLimits, known_capabilities: Collection[str]
) -> Request:
    """The Request in a JSON document :func:`load_json` read (a WebSocket message, RFC 8887
    4.3.2, is parsed once to learn its type); RequestError describing the first problem."""
    request = _request_from_json(document, limits)
    if len(request.method_calls) > limits.max_calls_in_request:
        raise RequestError.limit_exceeded(
            "maxCallsInRequest",
            f"The request has more than {limits.max_calls_in_request} method calls.",
        )
    _check_capabilities(request.using, known_capabilities)
    return request


def _check_content_type(content_type: str | None) -> None:
    """RFC 8620 3.1: the request MUST be of type application/json (I-JSON is UTF-8)."""
    if content_type is None:
        raise RequestError("notJSON", "The request has no Content-Type; use application/json.")
    media_type, *parameters = content_type.split(";")
    if media_type.strip().lower() != "application/json":
        raise RequestError("notJSON", "The Content-Type must be application/json.")
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset != "utf-8":
            raise RequestError("notJSON", "The request must be encoded in UTF-8.")


def load_json(body: bytes) -> object:
    """RFC 8620 1.5: parse as I-JSON; orjson refuses bad UTF-8, NaN and lone surrogates.

    The structure is measured on the octets first, in a few passes that run in C, so a body
    too deep or with too many values costs milliseconds, not the parse itself.
    """
    structure = _structure(body)
    if structure is None or _values(structure) > MAX_JSON_VALUES:
        raise RequestError("notJSON", f"The request holds more than {MAX_JSON_VALUES} values.")
    if _nests_deeper(structure, MAX_JSON_DEPTH):
        raise RequestError("notJSON", f"The request nests deeper than {MAX_JSON_DEPTH} levels.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError("notJSON", f"The request did not parse as I-JSON: {exc}") from None


# Octets that matter to the structure of a JSON text; every other one is dropped.
_STRUCTURAL = b'"[]{},:'
_NOT_STRUCTURAL = bytes(octet for octet in range(256) if octet not in _STRUCTURAL)
# +1 for an opening bracket, -1 for a closing one, indexed by octet.
_NESTING = tuple(1 if octet in b"[{" else -1 if octet in b"]}" else 0 for octet in range(256))


def _structure(body: bytes) -> bytes | None:
    """The brackets, commas and colons of ``body`` outside its strings, in order.

    None when it has more strings than MAX_JSON_VALUES allows. Exact for valid JSON; where
    the text is not, orjson stops at the first error, before any miscount could matter.
    Inside a string every backslash starts a two-character escape, so removing the escaped
    backslashes first, then the escaped quotes, leaves only the quotes that delimit strings.
    """
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    # A string holding no structural octet shrinks to '""' and goes; two strings are never
    # adjacent in JSON (a "," or ":" separates them), so no other '""' exists.
    compact = unescaped.translate(None, _NOT_STRUCTURAL).replace(b'""', b"")
    if compact.count(b'"') > 2 * MAX_JSON_VALUES:
        return None
    return b"".join(compact.split(b'"')[::2])


def _values(structure: bytes) -> int:
    """About one per value and one per member name (see MAX_JSON_VALUES)."""
    return sum(structure.count(octet) for octet in (b"[", b"{", b",", b":"))


def _nests_deeper(structure: bytes, max_depth: int) -> bool:
    """Whether the running sum of brackets passes ``max_depth`` (map, accumulate and max all
    run in C: some 40 ns a bracket)."""
    brackets = structure.translate(None, b",:")
    if len(brackets) <= max_depth:
        return False
    return max(accumulate(map(_NESTING.__getitem__, brackets))) > max_depth


def _request_from_json(document: object, limits: CoreLimits) -> Request:
    """Check the Request type signature; unknown properties are ignored (RFC 8620 3.3)."""
    if not isinstance(document, dict):
        raise RequestError("notRequest", "The request must be a JSON object.")
    for name in ("using", "methodCalls"):
        if name not in document:
            raise RequestError("notRequest", f"{name} is required.")
    return Request(
        using=frozenset(_parse_using(document["using"])),
        method_calls=_parse_method_calls(document["methodCalls"]),
        created_ids=_parse_created_ids(document.get("createdIds")),
        limits=limits,
    )


def _parse_using(value: object) -> list[str]:
    """using: String[]."""
    if not isinstance(value, list):
        raise RequestError("notRequest", "using must be an array of strings.")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise RequestError("notRequest", f"using[{index}] must be a string.")
    return value


def _parse_method_calls(value: object) -> list[Invocation]:
    """methodCalls: Invocation[]."""
    if not isinstance(value, list):
        raise RequestError("notRequest", "methodCalls must be an array.")
    return [_parse_invocation(item, f"methodCalls[{index}]") for index, item in enumerate(value)]


def _parse_invocation(value: object, where: str) -> Invocation:
    """RFC 8620 3.2: an Invocation is exactly [String, String[*], String]."""
    if not isinstance(value, list) or len(value) != 3:
        raise RequestError("notRequest", f"{where} must be an array of 3 elements.")
    name, arguments, call_id = value
    if not isinstance(name, str):
        raise RequestError("notRequest", f"{where}[0] must be a string.")
    if not isinstance(arguments, dict):
        raise RequestError("notRequest", f"{where}[1] must be an object.")
    if not isinstance(call_id, str):
        raise RequestError("notRequest", f"{where}[2] must be a string.")
    return Invocation(name, arguments, call_id)


def _parse_created_ids(value: object) -> dict[str, str] | None:
    """createdIds: Id[Id], optional; null is taken as absent (RFC 8620 3.3)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RequestError("notRequest", "createdIds must be an object.")
    for creation_id, record_id in value.items():
        if not is_valid_id(creation_id):
            raise RequestError("notRequest", f"createdIds key {creation_id!r} is not an Id.")
        if not isinstance(record_id, str) or not is_valid_id(record_id):
            raise RequestError("notRequest", f"createdIds[{creation_id!r}] must be an Id.")
    return value


def _check_capabilities(using: Collection[str], known: Collection[str]) -> None:
    """RFC 8620 3.6.1: a capability the server does not support rejects the request."""
    for capability in sorted(using):
        if capability not in known:
            raise RequestError(
                "unknownCapability",
                f"The Request object used capability {capability!r}, "
                "which is not supported by this server.",
            )
