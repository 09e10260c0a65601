"""Query machinery shared by every data type: windows, query changes, collations.

Foo/query (RFC 8620 5.5) and Foo/queryChanges (RFC 8620 5.6) differ between types
only in how the full, ordered list of matching ids is built. Everything after that
list exists lives here, free of I/O, so Mailbox/query and Email/query window results,
report changes and compare strings in exactly the same way.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from gateway.jmap.errors import MethodError

# RFC 8620 5.5: without a collation the default MUST be unicode-aware and SHOULD be
# case insensitive; i;unicode-casemap is the RFC's own example of such an algorithm,
# and neither i;octet (case sensitive) nor i;ascii-casemap (ASCII only) qualifies.
DEFAULT_COLLATION = "i;unicode-casemap"


@dataclass(frozen=True)
class Window:
    """The part of the results a Foo/query returns (RFC 8620 5.5).

    `limit` is the server's limit when it differs from the client's, and None when the
    response must not carry a `limit` argument.
    """

    position: int
    ids: list[str]
    limit: int | None


def window(
    ids: Sequence[str],
    *,
    position: int,
    anchor: str | None,
    anchor_offset: int,
    limit: int | None,
    max_limit: int | None = None,
) -> Window:
    """Cut the window a client asked for out of the full, ordered results.

    `limit` must already be non-negative: `standard.parse_query` is the one place that
    rejects a negative limit with invalidArguments, so a negative value here is a bug.
    """
    if limit is not None and limit < 0:
        raise ValueError("a negative limit must be rejected by parse_query")
    start = _anchor_index(ids, anchor, anchor_offset) if anchor is not None else position
    if anchor is None and start < 0:
        # RFC 8620 5.5: a negative position MUST be added to the total, then clamped to 0.
        start = max(0, len(ids) + start)
    used, server_limit = _server_limit(limit, max_limit)
    stop = len(ids) if used is None else start + used
    # RFC 8620 5.5: if position is >= total, ids MUST be the empty list; the slice does it.
    return Window(position=start, ids=list(ids[start:stop]), limit=server_limit)


def _anchor_index(ids: Sequence[str], anchor: str, anchor_offset: int) -> int:
    """RFC 8620 5.5: the anchor's index plus anchorOffset, clamped to 0; position is ignored."""
    try:
        index = ids.index(anchor)
    except ValueError:
        raise MethodError("anchorNotFound", f"{anchor!r} is not in the results") from None
    return max(0, index + anchor_offset)


def _server_limit(limit: int | None, max_limit: int | None) -> tuple[int | None, int | None]:
    """Return the limit to apply and the limit to report, if the server changed it.

    RFC 8620 5.5: a limit above the server's maximum, or none at all, is clamped to the
    maximum, and the new limit is returned so the client is aware.
    """
    if max_limit is not None and (limit is None or limit > max_limit):
        return max_limit, max_limit
    return limit, None


@dataclass(frozen=True)
class AddedItem:
    """An id and its index in the new results (RFC 8620 5.6)."""

    id: str
    index: int


@dataclass(frozen=True)
class QueryChangesResult:
    """The `removed` and `added` arguments of a Foo/queryChanges response."""

    removed: list[str]
    added: list[AddedItem]


def query_changes(
    *,
    changed: Collection[str],
    current: Sequence[str],
    up_to_id: str | None,
    max_changes: int | None,
    immutable_query: bool = False,
) -> QueryChangesResult:
    """Compute a queryChanges answer without the old results, from what changed since.

    The strategy: every id in `changed` is reported as removed, and those of them in the
    current results are added back at their current index. RFC 8620 5.6 allows it:
    `removed` MAY hold extra ids that may have been in the old results, and `added` MUST
    hold every current id that is in `removed`. It is exact as long as an id absent from
    `changed` kept its membership and its order relative to the other unchanged ids,
    because then the client's list minus `removed` is the new list minus the changed
    ids, and splicing each added id in at its index rebuilds the new list.

    So `changed` must hold every id created, updated or destroyed since the old query
    state, and also every id whose membership or position depends on another record
    that changed (e.g. the descendants of a changed Mailbox under sortAsTree or
    filterAsTree). `current` is the full, unwindowed, ordered new results.

    `immutable_query` says the sort and filter only read immutable properties; only
    then does upToId apply (RFC 8620 5.6: otherwise "this argument is ignored").
    """
    horizon = _up_to_horizon(current, up_to_id) if immutable_query else len(current)
    wanted = set(changed)
    beyond = set(current[horizon:]) & wanted
    # RFC 8620 5.6: with an immutable sort and filter, ids after upToId SHOULD be omitted
    # from both arrays. Only ids still in the results can be placed after upToId; a
    # destroyed id's old index is unknown, and reporting it removed is always allowed.
    removed = sorted(wanted - beyond)
    # RFC 8620 5.6: added MUST be sorted by index, lowest first; enumerate gives that.
    added = [AddedItem(id_, i) for i, id_ in enumerate(current[:horizon]) if id_ in wanted]
    _check_max_changes(len(removed) + len(added), max_changes)
    return QueryChangesResult(removed=removed, added=added)


def _up_to_horizon(current: Sequence[str], up_to_id: str | None) -> int:
    """The number of leading current ids to consider: up to and including upToId.

    RFC 8620 5.6: upToId only counts if it "exists in the results"; otherwise every id is.
    """
    if up_to_id is None or up_to_id not in current:
        return len(current)
    return current.index(up_to_id) + 1


def _check_max_changes(count: int, max_changes: int | None) -> None:
    """RFC 8620 5.6: each removed or added item is one change; more than maxChanges fails."""
    if max_changes is not None and count > max_changes:
        raise MethodError(
            "tooManyChanges", f"{count} changes are more than maxChanges {max_changes}"
        )


# RFC 4790 9.2: i;ascii-casemap compares as i;octet after a-z become A-Z; nothing else.
_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)


class _SimpleTitlecase(dict[int, str]):
    """A `str.translate` table of each code point's simple titlecase mapping, filled lazily.

    Python only exposes full case mappings; when a full titlecase is several characters
    (as for "ß" -> "Ss") the UnicodeData.txt simple mapping RFC 5051 uses leaves the
    character as it is, so the character is kept. Filling on demand keeps import cheap
    while `translate` still runs in C for every code point seen before.
    """

    def __missing__(self, code_point: int) -> str:
        character = chr(code_point)
        title = character.title()
        self[code_point] = title if len(title) == 1 else character
        return self[code_point]


_TITLECASE = _SimpleTitlecase()


def _octet(value: str) -> str:
    """i;octet (RFC 4790 9.3): code point order is UTF-8 octet order, so the string itself."""
    return value


def _ascii_casemap(value: str) -> str:
    """i;ascii-casemap (RFC 4790 9.2): ASCII letters upper-cased, other characters untouched."""
    return value.translate(_ASCII_UPPER)


def _unicode_casemap(value: str) -> str:
    """i;unicode-casemap (RFC 5051 2): titlecase, decompose, repeat until nothing changes.

    Titlecasing, NFKD, then titlecasing what the decomposition produced reaches that
    fixed point for every code point (checked against Python's Unicode database). This
    is close enough to RFC 5051, not identical: NFKD also reorders combining marks
    and decomposes Hangul syllables, which UnicodeData.txt decompositions do not.
    Comparing the resulting strings by code point is comparing their UTF-8 octets.
    """
    decomposed = unicodedata.normalize("NFKD", value.translate(_TITLECASE))
    return decomposed.translate(_TITLECASE)


# The collations the gateway implements, by their RFC 4790 registry names.
_COLLATIONS: dict[str, Callable[[str], str]] = {
    "i;ascii-casemap": _ascii_casemap,
    "i;octet": _octet,
    "i;unicode-casemap": _unicode_casemap,
}

# What the Session advertises as collationAlgorithms (RFC 8620 2): exactly these.
SUPPORTED_COLLATIONS: tuple[str, ...] = tuple(_COLLATIONS)


def resolve_collation(collation: str | None) -> str:
    """Return the collation to use, DEFAULT_COLLATION when the comparator names none.

    Call it while parsing a sort, so an unknown collation fails even when there is
    nothing to sort. RFC 8620 5.5: a collation the server does not recognise is
    unsupportedSort.
    """
    name = DEFAULT_COLLATION if collation is None else collation
    if name not in _COLLATIONS:
        raise MethodError("unsupportedSort", f"Unsupported collation {name!r}")
    return name


def collation_key(value: str, collation: str) -> str:
    """Return a key that orders and equates strings as the collation does."""
    return _COLLATIONS[resolve_collation(collation)](value)
