"""Arguments of the standard methods, parsed once for every data type (RFC 8620 5).

Each `parse_*` function checks the JSON type of every argument, refuses unknown
argument names and raises one invalidArguments naming every bad argument, so a
translator only ever sees typed, valid arguments. Type-specific arguments are allowed
through `extra` and read by the caller, with `ArgReader` and the converters below.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from gateway.jmap.errors import MethodError
from gateway.jmap.protocol import JsonObject, is_valid_id

T = TypeVar("T")

# RFC 8620 1.3: Int is -2^53+1 <= value <= 2^53-1.
MAX_INT = 2**53 - 1

# RFC 8620 5.5: the FilterOperator operators.
FILTER_OPERATORS = frozenset({"AND", "OR", "NOT"})

# Bounds on what one call may ask of the server, each answered past it with an error the RFC
# defines; real clients stay far below them. Every filter walk recurses once per
# FilterOperator, and every condition is evaluated for every candidate record, so filters
# nested deeper or holding more conditions (FilterOperators and FilterCondition properties,
# an empty condition counting one) are unsupportedFilter ("the server cannot process it",
# RFC 8620 5.5).
MAX_FILTER_DEPTH = 32
MAX_FILTER_CONDITIONS = 256
# RFC 8620 5.5 unsupportedSort past this: each comparator is one more pass of the sort.
MAX_SORT_COMPARATORS = 16
# invalidArguments past this: a /get renders every property of every object (header: forms
# read the header section again for each), so the distinct names asked for are bounded.
MAX_PROPERTIES = 256


class InvalidValue(ValueError):
    """A converter's reason for refusing a value, e.g. "must be a String"."""


# Converters: each takes a decoded JSON value and returns it typed, or raises InvalidValue.


def as_string(value: object) -> str:
    """String."""
    if not isinstance(value, str):
        raise InvalidValue("must be a String")
    return value


def as_id(value: object) -> str:
    """Id (RFC 8620 1.2)."""
    if not isinstance(value, str) or not is_valid_id(value):
        raise InvalidValue("must be an Id")
    return value


def as_bool(value: object) -> bool:
    """Boolean."""
    if not isinstance(value, bool):
        raise InvalidValue("must be a Boolean")
    return value


def as_int(value: object) -> int:
    """Int (RFC 8620 1.3): an integral JSON number in the safe range; true is not 1."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue("must be an Int")
    if isinstance(value, float) and not value.is_integer():
        raise InvalidValue("must be an Int")
    if abs(value) > MAX_INT:
        raise InvalidValue("must be an Int between -2^53+1 and 2^53-1")
    return int(value)


def as_unsigned_int(value: object) -> int:
    """UnsignedInt (RFC 8620 1.3)."""
    number = as_int(value)
    if number < 0:
        raise InvalidValue("must be an UnsignedInt")
    return number


def as_positive_int(value: object) -> int:
    """UnsignedInt greater than 0 (RFC 8620 5.2 maxChanges)."""
    number = as_int(value)
    if number < 1:
        raise InvalidValue("must be a positive integer")
    return number


# RFC 8620 1.4: UTCDate, "Z" and no other zone.
_UTC_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", re.ASCII)


def as_utc_date(value: object) -> datetime:
    """UTCDate (RFC 8620 1.4), as an aware datetime."""
    if not isinstance(value, str) or not _UTC_DATE.fullmatch(value):
        raise InvalidValue("must be a UTCDate")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidValue("is not a date") from None


def as_object(value: object) -> JsonObject:
    """A JSON object."""
    if not isinstance(value, dict):
        raise InvalidValue("must be an object")
    return value


def as_string_list(value: object) -> list[str]:
    """String[]."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidValue("must be an array of Strings")
    return value


def as_id_list(value: object) -> list[str]:
    """Id[]."""
    if not isinstance(value, list) or not all(_is_id(item) for item in value):
        raise InvalidValue("must be an array of Ids")
    return value


def as_id_map(value: object) -> dict[str, JsonObject]:
    """Id[Object], as in /set create."""
    return _object_map(value, is_valid_id, "an Id")


def is_id_or_reference(value: object) -> bool:
    """An Id, or ``#`` and a creation id of this request (RFC 8620 5.3)."""
    return isinstance(value, str) and (
        is_valid_id(value) or (value.startswith("#") and is_valid_id(value[1:]))
    )


def as_reference_map(value: object) -> dict[str, JsonObject]:
    """Id[PatchObject] of /set update, whose keys may name records created earlier."""
    return _object_map(value, is_id_or_reference, "an Id or #creationId")


def as_reference_list(value: object) -> list[str]:
    """Id[] of /set destroy, whose items may name records created earlier."""
    if not isinstance(value, list) or not all(is_id_or_reference(item) for item in value):
        raise InvalidValue("must be an array of Ids or #creationIds")
    return value


def _object_map(
    value: object, valid_key: Callable[[str], bool], what: str
) -> dict[str, JsonObject]:
    if not isinstance(value, dict):
        raise InvalidValue("must be an object")
    for key, item in value.items():
        if not valid_key(key):
            raise InvalidValue(f"key {key!r} is not {what}")
        if not isinstance(item, dict):
            raise InvalidValue(f"value of {key!r} must be an object")
    return value


def nullable(convert: Callable[[object], T]) -> Callable[[object], T | None]:
    """Allow null besides what `convert` accepts."""

    def convert_or_null(value: object) -> T | None:
        return None if value is None else convert(value)

    return convert_or_null


def _is_id(value: object) -> bool:
    """Tell whether a decoded JSON value is an Id, whatever its type."""
    return isinstance(value, str) and is_valid_id(value)


def as_filter(value: object) -> JsonObject:
    """FilterOperator|FilterCondition (RFC 8620 5.5); conditions are the type's business.

    Checked without recursion, so a deep filter cannot exhaust the stack; its size is
    checked apart (:func:`check_filter`), once the rest of the arguments proved valid.
    """
    pending = [value]
    while pending:
        node = pending.pop()
        if not isinstance(node, dict):
            raise InvalidValue("must be a FilterOperator or FilterCondition object")
        # RFC 8620 5.5: a FilterCondition MUST NOT have an operator property.
        if "operator" in node:
            pending.extend(_operator_conditions(node))
    return cast(JsonObject, value)


def _operator_conditions(value: JsonObject) -> list[Any]:
    """An operator of AND/OR/NOT and an array of nested filters: the nested filters."""
    if not isinstance(value["operator"], str) or value["operator"] not in FILTER_OPERATORS:
        raise InvalidValue("operator must be AND, OR or NOT")
    conditions = value.get("conditions")
    if not isinstance(conditions, list):
        raise InvalidValue("conditions must be an array")
    return conditions


def check_filter(value: JsonObject | None) -> None:
    """unsupportedFilter for a valid filter nested or sized past what the server processes."""
    if value is None:
        return
    level: list[JsonObject] = [value]
    depth = count = 0
    while level:
        operators = [node for node in level if "operator" in node]
        depth += bool(operators)
        count += sum(1 if "operator" in node else max(1, len(node)) for node in level)
        if depth > MAX_FILTER_DEPTH or count > MAX_FILTER_CONDITIONS:
            raise MethodError(
                "unsupportedFilter",
                f"The filter nests FilterOperators deeper than {MAX_FILTER_DEPTH} or holds "
                f"more than {MAX_FILTER_CONDITIONS} conditions.",
            )
        level = [child for node in operators for child in node["conditions"]]


def check_sort(sort: list[Comparator] | None) -> None:
    """unsupportedSort for more comparators than the server sorts by."""
    if sort is not None and len(sort) > MAX_SORT_COMPARATORS:
        raise MethodError(
            "unsupportedSort", f"The sort has more than {MAX_SORT_COMPARATORS} comparators."
        )


def check_properties(name: str, properties: list[str] | None) -> None:
    """invalidArguments for more distinct property names than MAX_PROPERTIES."""
    if properties is not None and len(set(properties)) > MAX_PROPERTIES:
        raise MethodError.invalid_arguments(
            f"{name}: more than {MAX_PROPERTIES} distinct properties", arguments=[name]
        )


@dataclass(frozen=True)
class Comparator:
    """One sort criterion (RFC 8620 5.5); `extra` keeps type-specific properties."""

    property: str
    is_ascending: bool = True
    collation: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def as_sort(value: object) -> list[Comparator]:
    """Comparator[]."""
    if not isinstance(value, list):
        raise InvalidValue("must be an array of Comparators")
    return [_as_comparator(item, index) for index, item in enumerate(value)]


def _as_comparator(value: object, index: int) -> Comparator:
    """A Comparator: property, optional isAscending and collation, maybe more."""
    if not isinstance(value, dict):
        raise InvalidValue(f"comparator {index} must be an object")
    prop = value.get("property")
    ascending = value.get("isAscending", True)
    collation = value.get("collation")
    if not isinstance(prop, str):
        raise InvalidValue(f"comparator {index}: property must be a String")
    if not isinstance(ascending, bool):
        raise InvalidValue(f"comparator {index}: isAscending must be a Boolean")
    if collation is not None and not isinstance(collation, str):
        raise InvalidValue(f"comparator {index}: collation must be a String")
    extra = {k: v for k, v in value.items() if k not in {"property", "isAscending", "collation"}}
    return Comparator(prop, ascending, collation, extra)


# A type-specific argument of a standard method: its converter and its default. Methods pass
# ``extra={name: Extra}`` to the parse_* functions, which read them with the standard ones, so
# a wrong type is invalidArguments naming it like any other argument.
Extra = tuple[Callable[[object], Any], Any]


class ArgReader:
    """Reads a method's arguments, collecting every problem before failing once.

    Read each argument with `required` or `optional`, then call `finish`, which raises
    invalidArguments naming every bad argument. Values returned for bad arguments are
    placeholders that never escape, because `finish` raises before they can be used.
    """

    def __init__(self, arguments: JsonObject, allowed: Collection[str]) -> None:
        self._arguments = arguments
        # RFC 8620 3.9: unknown arguments MUST be rejected with invalidArguments.
        self._problems = {name: "unknown argument" for name in arguments if name not in allowed}

    def required(self, name: str, convert: Callable[[object], T]) -> T:
        """Read an argument that has no default."""
        if name not in self._arguments:
            self._problems[name] = "required"
            return cast(T, None)
        return self._convert(name, convert, cast(T, None))

    def optional(self, name: str, convert: Callable[[object], T], default: T) -> T:
        """Read an argument; absent means `default` (RFC 8620 3.5)."""
        if name not in self._arguments:
            return default
        return self._convert(name, convert, default)

    def _convert(self, name: str, convert: Callable[[object], T], placeholder: T) -> T:
        """Convert one present argument, recording rather than raising its problem."""
        try:
            return convert(self._arguments[name])
        except InvalidValue as problem:
            self._problems[name] = str(problem)
            return placeholder

    def extras(self, extra: Collection[str]) -> dict[str, Any]:
        """Read the type-specific arguments that ``extra`` maps to an :data:`Extra`.

        A plain collection of names only allows them, for the caller to read itself.
        """
        if not isinstance(extra, Mapping):
            return {}
        return {name: self.optional(name, *how) for name, how in extra.items()}

    def reject(self, name: str, reason: str) -> None:
        """Record a problem found by a check across arguments."""
        self._problems[name] = reason

    def finish(self) -> None:
        """Raise invalidArguments naming every bad argument, if there is any."""
        if self._problems:
            description = "; ".join(f"{name}: {why}" for name, why in self._problems.items())
            raise MethodError.invalid_arguments(description, arguments=list(self._problems))


@dataclass(frozen=True)
class GetArgs:
    """Foo/get (RFC 8620 5.1)."""

    account_id: str
    ids: list[str] | None
    properties: list[str] | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChangesArgs:
    """Foo/changes (RFC 8620 5.2)."""

    account_id: str
    since_state: str
    max_changes: int | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SetArgs:
    """Foo/set (RFC 8620 5.3)."""

    account_id: str
    if_in_state: str | None
    create: dict[str, JsonObject] | None
    update: dict[str, JsonObject] | None
    destroy: list[str] | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CopyArgs:
    """Foo/copy (RFC 8620 5.4)."""

    from_account_id: str
    if_from_in_state: str | None
    account_id: str
    if_in_state: str | None
    create: dict[str, JsonObject]
    on_success_destroy_original: bool
    destroy_from_if_in_state: str | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueryArgs:
    """Foo/query (RFC 8620 5.5)."""

    account_id: str
    filter: JsonObject | None
    sort: list[Comparator] | None
    position: int
    anchor: str | None
    anchor_offset: int
    limit: int | None
    calculate_total: bool
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueryChangesArgs:
    """Foo/queryChanges (RFC 8620 5.6)."""

    account_id: str
    filter: JsonObject | None
    sort: list[Comparator] | None
    since_query_state: str
    max_changes: int | None
    up_to_id: str | None
    calculate_total: bool
    extra: dict[str, Any] = field(default_factory=dict)


def parse_get(args: JsonObject, max_objects_in_get: int, extra: Collection[str] = ()) -> GetArgs:
    """Parse Foo/get arguments."""
    reader = ArgReader(args, {"accountId", "ids", "properties", *extra})
    parsed = GetArgs(
        account_id=reader.required("accountId", as_id),
        ids=reader.optional("ids", nullable(as_id_list), None),
        properties=reader.optional("properties", nullable(as_string_list), None),
        extra=reader.extras(extra),
    )
    reader.finish()
    # RFC 8620 5.1: more ids than maxObjectsInGet is requestTooLarge.
    if parsed.ids is not None and len(parsed.ids) > max_objects_in_get:
        raise MethodError("requestTooLarge", f"More than {max_objects_in_get} ids requested")
    check_properties("properties", parsed.properties)
    return parsed


def parse_changes(args: JsonObject, extra: Collection[str] = ()) -> ChangesArgs:
    """Parse Foo/changes arguments."""
    reader = ArgReader(args, {"accountId", "sinceState", "maxChanges", *extra})
    parsed = ChangesArgs(
        account_id=reader.required("accountId", as_id),
        since_state=reader.required("sinceState", as_string),
        # RFC 8620 5.2: maxChanges MUST be greater than 0, else invalidArguments.
        max_changes=reader.optional("maxChanges", nullable(as_positive_int), None),
        extra=reader.extras(extra),
    )
    reader.finish()
    return parsed


def parse_set(args: JsonObject, max_objects_in_set: int, extra: Collection[str] = ()) -> SetArgs:
    """Parse Foo/set arguments."""
    reader = ArgReader(args, {"accountId", "ifInState", "create", "update", "destroy", *extra})
    parsed = SetArgs(
        account_id=reader.required("accountId", as_id),
        if_in_state=reader.optional("ifInState", nullable(as_string), None),
        create=reader.optional("create", nullable(as_id_map), None),
        # RFC 8620 5.3: update and destroy may reference records created in this request.
        update=reader.optional("update", nullable(as_reference_map), None),
        destroy=reader.optional("destroy", nullable(as_reference_list), None),
        extra=reader.extras(extra),
    )
    reader.finish()
    count = sum(len(part or ()) for part in (parsed.create, parsed.update, parsed.destroy))
    _check_set_size(count, max_objects_in_set)
    return parsed


def parse_copy(args: JsonObject, max_objects_in_set: int, extra: Collection[str] = ()) -> CopyArgs:
    """Parse Foo/copy arguments."""
    names = {
        "fromAccountId",
        "ifFromInState",
        "accountId",
        "ifInState",
        "create",
        "onSuccessDestroyOriginal",
        "destroyFromIfInState",
    }
    reader = ArgReader(args, {*names, *extra})
    parsed = CopyArgs(
        from_account_id=reader.required("fromAccountId", as_id),
        if_from_in_state=reader.optional("ifFromInState", nullable(as_string), None),
        account_id=reader.required("accountId", as_id),
        if_in_state=reader.optional("ifInState", nullable(as_string), None),
        create=reader.required("create", as_id_map),
        on_success_destroy_original=reader.optional("onSuccessDestroyOriginal", as_bool, False),
        destroy_from_if_in_state=reader.optional("destroyFromIfInState", nullable(as_string), None),
        extra=reader.extras(extra),
    )
    # RFC 8620 5.4: accountId MUST be different to the fromAccountId. Both are None
    # placeholders when missing, which the reader has already recorded.
    if parsed.account_id is not None and parsed.account_id == parsed.from_account_id:
        reader.reject("accountId", "must differ from fromAccountId")
    reader.finish()
    _check_set_size(len(parsed.create), max_objects_in_set)
    return parsed


def _check_set_size(count: int, max_objects_in_set: int) -> None:
    """RFC 8620 5.3: more objects than maxObjectsInSet is requestTooLarge."""
    if count > max_objects_in_set:
        raise MethodError("requestTooLarge", f"More than {max_objects_in_set} objects to change")


def parse_query(args: JsonObject, extra: Collection[str] = ()) -> QueryArgs:
    """Parse Foo/query arguments."""
    names = {"accountId", "filter", "sort", "position", "anchor", "anchorOffset", "limit"}
    reader = ArgReader(args, {*names, "calculateTotal", *extra})
    parsed = QueryArgs(
        account_id=reader.required("accountId", as_id),
        filter=reader.optional("filter", nullable(as_filter), None),
        sort=reader.optional("sort", nullable(as_sort), None),
        position=reader.optional("position", as_int, 0),
        anchor=reader.optional("anchor", nullable(as_id), None),
        anchor_offset=reader.optional("anchorOffset", as_int, 0),
        # RFC 8620 5.5: a negative limit MUST be rejected with invalidArguments.
        limit=reader.optional("limit", nullable(as_unsigned_int), None),
        calculate_total=reader.optional("calculateTotal", as_bool, False),
        extra=reader.extras(extra),
    )
    reader.finish()
    check_filter(parsed.filter)
    check_sort(parsed.sort)
    return parsed


def parse_query_changes(args: JsonObject, extra: Collection[str] = ()) -> QueryChangesArgs:
    """Parse Foo/queryChanges arguments."""
    names = {"accountId", "filter", "sort", "sinceQueryState", "maxChanges", "upToId"}
    reader = ArgReader(args, {*names, "calculateTotal", *extra})
    parsed = QueryChangesArgs(
        account_id=reader.required("accountId", as_id),
        filter=reader.optional("filter", nullable(as_filter), None),
        sort=reader.optional("sort", nullable(as_sort), None),
        since_query_state=reader.required("sinceQueryState", as_string),
        max_changes=reader.optional("maxChanges", nullable(as_unsigned_int), None),
        up_to_id=reader.optional("upToId", nullable(as_id), None),
        calculate_total=reader.optional("calculateTotal", as_bool, False),
        extra=reader.extras(extra),
    )
    reader.finish()
    check_filter(parsed.filter)
    check_sort(parsed.sort)
    return parsed


def check_if_in_state(if_in_state: str | None, current: str) -> None:
    """RFC 8620 5.3: a given ifInState that is not the current state is stateMismatch."""
    if if_in_state is not None and if_in_state != current:
        raise MethodError(
            "stateMismatch", f"ifInState {if_in_state!r} is not the current state {current!r}"
        )
