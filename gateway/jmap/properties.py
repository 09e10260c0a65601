"""A data type's properties as one table of flags (RFC 8620 5.1, 5.3), read by /get and /set.

Each type declares its named properties once, in the order its default property set is
returned, with what RFC 8620 5.3 and the type's own RFC say of each: server-set (a client
never gives it), immutable (fixed once created), always returned (``id``, RFC 8620 5.1),
part of the default set, where the value comes from (a type-specific tag: for Email, what
the fetch must load) and, for values read straight off a record, how. /get validation,
/set validation and a fetch plan then read the table instead of each keeping its own list.

Properties that follow a rule rather than a name (Email's ``header:Name:asForm:all``) are
not rows; the type passes a predicate for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gateway.jmap.errors import MethodError

S = TypeVar("S")


@dataclass(frozen=True)
class Property(Generic[S]):
    """One named property and its flags."""

    name: str
    source: S
    server_set: bool = False
    # RFC 8620 5.3: may be given on create but not changed by an update.
    immutable: bool = False
    default: bool = True
    # RFC 8620 5.1: "id" is always returned, whatever properties asks for.
    always: bool = False
    # How the value is read from the type's own record, for properties read one by one
    # (Email's index metadata); None where the type renders the property otherwise.
    read: Callable[[Any], Any] | None = None


class PropertyTable(Generic[S]):
    """The named properties of one type; ``unknown`` words the invalidArguments description
    for properties it does not know (``{}`` stands for the list of them)."""

    def __init__(self, rows: Iterable[Property[S]], unknown: str) -> None:
        self._rows: dict[str, Property[S]] = {row.name: row for row in rows}
        self._unknown = unknown
        self.names = frozenset(self._rows)
        self.defaults = tuple(row.name for row in self._rows.values() if row.default)
        self.always = tuple(row.name for row in self._rows.values() if row.always)
        self.server_set = frozenset(row.name for row in self._rows.values() if row.server_set)
        self.immutable = frozenset(row.name for row in self._rows.values() if row.immutable)
        # What an update may change: neither server-set nor immutable.
        self.mutable = self.names - self.server_set - self.immutable
        self.sources: Mapping[str, S] = {row.name: row.source for row in self._rows.values()}

    def __iter__(self) -> Iterator[Property[S]]:
        return iter(self._rows.values())

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def __getitem__(self, name: str) -> Property[S]:
        return self._rows[name]

    def named(self, source: S) -> tuple[str, ...]:
        """The properties whose value comes from ``source``, in table order."""
        return tuple(row.name for row in self._rows.values() if row.source == source)

    def select(
        self, requested: list[str] | None, also: Callable[[str], bool] | None = None
    ) -> list[str]:
        """The properties a /get returns, in the order asked, each once, ``id`` first.

        ``requested`` None is the default set (RFC 8620 5.1). A name neither in the table nor
        accepted by ``also`` (the type's rule-based properties) is invalidArguments.
        """
        if requested is None:
            return list(self.defaults)
        unknown = [p for p in requested if p not in self._rows and not (also and also(p))]
        if unknown:
            raise MethodError.invalid_arguments(
                "properties: " + self._unknown.format(unknown), arguments=["properties"]
            )
        # RFC 8620 5.1: the id is always returned.
        return [*self.always, *(p for p in dict.fromkeys(requested) if p not in self.always)]
