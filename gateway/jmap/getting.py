"""The rules of every Foo/get response (RFC 8620 5.1), apart from how records are found.

Which ids a /get answers and in what order, when "all ids" is too many, and the response's
shape are the same for every data type; gateway.translators.getting runs them with the
type's records.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

from gateway.jmap.errors import MethodError


def check_all(count: int, max_objects: int, noun: str) -> None:
    """RFC 8620 5.1: ids null asks for every record; past maxObjectsInGet it is
    requestTooLarge (``noun`` names the records, plural)."""
    if count > max_objects:
        raise MethodError("requestTooLarge", f"The account has more than {max_objects} {noun}")


def found_ids(ids: Sequence[str], found: Container[str]) -> list[str]:
    """The ids answered, in the order asked, each once."""
    return [i for i in dict.fromkeys(ids) if i in found]


def not_found(requested: Sequence[str] | None, found: Container[str]) -> list[str]:
    """RFC 8620 5.1: the ids asked for that do not exist, each once; with ids null, none
    (records gone between listing and reading them were not asked for)."""
    if requested is None:
        return []
    return [i for i in dict.fromkeys(requested) if i not in found]


def get_response(
    account_id: str, state: str, objects: list[dict[str, Any]], missing: list[str]
) -> dict[str, Any]:
    """The Foo/get response; dispatch encodes its ``list`` object by object."""
    return {"accountId": account_id, "state": state, "list": objects, "notFound": missing}
