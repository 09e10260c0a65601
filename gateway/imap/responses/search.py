"""SEARCH and SORT (RFC 3501 7.2.5, RFC 5256 4), ESEARCH (RFC 4731)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.imap.errors import ProtocolError
from gateway.imap.responses.tokens import Untagged, Value
from gateway.imap.responses.values import (
    as_int,
    as_list,
    as_nz_number,
    as_text,
    as_uid_set,
    expect_keyword,
    named_pairs,
    take,
)
from gateway.imap.sequence import UidSet


@dataclass(frozen=True, slots=True)
class SearchResult:
    """``* SEARCH n ...`` with the RFC 7162 3.1.5 ``(MODSEQ n)`` suffix when present."""

    numbers: list[int]
    modseq: int | None = None


def parse_search(response: Untagged) -> SearchResult:
    """SEARCH, and SORT (RFC 5256 4), whose answer has the same shape."""
    values = list(expect_keyword(response, "SEARCH", "SORT"))
    modseq = None
    if values and isinstance(values[-1], list):
        pairs = dict(named_pairs(as_list(values.pop(), "SEARCH"), "SEARCH MODSEQ"))
        if set(pairs) != {"MODSEQ"}:
            raise ProtocolError("unexpected data after SEARCH results")
        modseq = as_int(pairs["MODSEQ"], "MODSEQ")
    return SearchResult([as_nz_number(v, "SEARCH") for v in values], modseq)


@dataclass(frozen=True, slots=True)
class EsearchResult:
    """RFC 4731 ``* ESEARCH``; ``all`` holds UIDs when ``uid`` is set, else sequence numbers."""

    tag: str | None = None
    uid: bool = False
    min: int | None = None
    max: int | None = None
    count: int | None = None
    all: UidSet | None = None
    modseq: int | None = None  # RFC 7162 3.1.5
    extra: dict[str, Value] = field(default_factory=dict)


def parse_esearch(response: Untagged) -> EsearchResult:
    """RFC 4731 4: ESEARCH [search-correlator] [SP "UID"] *(SP search-return-data)."""
    values = list(expect_keyword(response, "ESEARCH"))
    tag = _search_correlator(values.pop(0)) if values and isinstance(values[0], list) else None
    uid = bool(values) and isinstance(values[0], str) and values[0].upper() == "UID"
    data = dict(named_pairs(values[1:] if uid else values, "ESEARCH"))
    return EsearchResult(
        tag,
        uid,
        min=take(data, "MIN", as_nz_number),
        max=take(data, "MAX", as_nz_number),
        count=take(data, "COUNT", as_int),
        all=take(data, "ALL", as_uid_set),
        modseq=take(data, "MODSEQ", as_int),
        extra={k: v for k, v in data.items() if k not in _ESEARCH_KNOWN},
    )


_ESEARCH_KNOWN = frozenset({"MIN", "MAX", "COUNT", "ALL", "MODSEQ"})


def _search_correlator(value: Value) -> str:
    """RFC 4731 4: ``(TAG "A282")``."""
    pairs = dict(named_pairs(as_list(value, "ESEARCH correlator"), "ESEARCH correlator"))
    if set(pairs) != {"TAG"}:
        raise ProtocolError("ESEARCH correlator is not (TAG ...)")
    return as_text(pairs["TAG"], "ESEARCH tag")
