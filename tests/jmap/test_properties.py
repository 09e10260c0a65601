"""Property tables (RFC 8620 5.1, 5.3) and the /get rules every type shares, without I/O."""

from __future__ import annotations

import enum

import pytest

from gateway.jmap.errors import MethodError
from gateway.jmap.getting import check_all, found_ids, get_response, not_found
from gateway.jmap.properties import Property, PropertyTable


class Kind(enum.Enum):
    RECORD = "record"
    COUNTER = "counter"


TABLE = PropertyTable(
    [
        Property("id", Kind.RECORD, server_set=True, immutable=True, always=True),
        Property("name", Kind.RECORD),
        Property("created", Kind.RECORD, immutable=True),
        Property("total", Kind.COUNTER, server_set=True),
        Property("raw", Kind.RECORD, immutable=True, default=False),
    ],
    unknown="not Widget properties: {}",
)


def test_flags_give_the_sets_get_and_set_read() -> None:
    assert TABLE.defaults == ("id", "name", "created", "total")
    assert TABLE.always == ("id",)
    assert TABLE.server_set == {"id", "total"}
    assert TABLE.immutable == {"id", "created", "raw"}
    # RFC 8620 5.3: an update may change only what is neither server-set nor immutable.
    assert TABLE.mutable == {"name"}
    assert TABLE.named(Kind.COUNTER) == ("total",)
    assert "raw" in TABLE and "nope" not in TABLE


def test_null_properties_is_the_default_set() -> None:
    assert TABLE.select(None) == ["id", "name", "created", "total"]


def test_id_first_each_once_in_the_order_asked() -> None:
    # RFC 8620 5.1: id is returned even when not asked for.
    assert TABLE.select(["total", "raw", "total"]) == ["id", "total", "raw"]
    assert TABLE.select(["name", "id", "name"]) == ["id", "name"]
    assert TABLE.select([]) == ["id"]


def test_unknown_properties_are_invalid_arguments_naming_them() -> None:
    with pytest.raises(MethodError) as caught:
        TABLE.select(["name", "colour", "x:y"])
    assert caught.value.type == "invalidArguments"
    assert caught.value.description == "properties: not Widget properties: ['colour', 'x:y']"


def test_rule_based_properties_pass_by_the_types_predicate() -> None:
    def is_rule(name: str) -> bool:
        return name.startswith("x:")

    assert TABLE.select(["x:y", "name"], is_rule) == ["id", "x:y", "name"]
    with pytest.raises(MethodError):
        TABLE.select(["y:x"], is_rule)


def test_found_and_not_found_follow_the_ids_asked() -> None:
    found = {"b", "a"}
    ids = ["a", "z", "b", "a", "z"]
    assert found_ids(ids, found) == ["a", "b"]
    assert not_found(ids, found) == ["z"]
    # RFC 8620 5.1: with ids null nothing was asked by id, so nothing is missing.
    assert not_found(None, found) == []


def test_all_ids_is_bounded_by_max_objects() -> None:
    check_all(10, 10, "widgets")
    with pytest.raises(MethodError) as caught:
        check_all(11, 10, "widgets")
    assert caught.value.type == "requestTooLarge"
    assert caught.value.description == "The account has more than 10 widgets"


def test_response_shape() -> None:
    assert get_response("A", "s1", [{"id": "a"}], ["z"]) == {
        "accountId": "A",
        "state": "s1",
        "list": [{"id": "a"}],
        "notFound": ["z"],
    }
