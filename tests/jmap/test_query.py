"""Query machinery (RFC 8620 5.5, 5.6): windows, queryChanges, collations."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.jmap.errors import MethodError
from gateway.jmap.query import (
    DEFAULT_COLLATION,
    SUPPORTED_COLLATIONS,
    AddedItem,
    QueryChangesResult,
    Window,
    collation_key,
    query_changes,
    resolve_collation,
    window,
)
from gateway.jmap.standard import parse_query

IDS = ["a", "b", "c", "d", "e"]


def cut(
    *,
    position: int = 0,
    anchor: str | None = None,
    anchor_offset: int = 0,
    limit: int | None = None,
    max_limit: int | None = None,
) -> Window:
    return window(
        IDS,
        position=position,
        anchor=anchor,
        anchor_offset=anchor_offset,
        limit=limit,
        max_limit=max_limit,
    )


def method_error(type_: str, call: Any, *args: Any, **kwargs: Any) -> MethodError:
    with pytest.raises(MethodError) as caught:
        call(*args, **kwargs)
    assert caught.value.type == type_
    return caught.value


# Window: position


def test_default_window_is_everything() -> None:
    assert cut() == Window(position=0, ids=IDS, limit=None)


def test_position_and_limit() -> None:
    assert cut(position=1, limit=2) == Window(1, ["b", "c"], None)


def test_limit_past_the_end_stops_at_the_end() -> None:
    assert cut(position=3, limit=10) == Window(3, ["d", "e"], None)


def test_limit_zero_is_empty() -> None:
    assert cut(position=1, limit=0) == Window(1, [], None)


def test_negative_position_counts_from_the_end() -> None:
    assert cut(position=-2) == Window(3, ["d", "e"], None)


def test_negative_position_before_the_start_is_clamped_to_zero() -> None:
    assert cut(position=-7, limit=2) == Window(0, ["a", "b"], None)


def test_position_at_the_end_is_empty_not_an_error() -> None:
    assert cut(position=5) == Window(5, [], None)


def test_position_past_the_end_keeps_the_position() -> None:
    assert cut(position=9, limit=3) == Window(9, [], None)


def test_empty_results() -> None:
    assert window([], position=-3, anchor=None, anchor_offset=0, limit=None) == Window(0, [], None)


def test_anchor_offset_ignored_without_anchor() -> None:
    assert cut(position=1, anchor_offset=2, limit=1) == Window(1, ["b"], None)


# Window: anchor


def test_anchor_replaces_position() -> None:
    assert cut(position=4, anchor="b", limit=2) == Window(1, ["b", "c"], None)


def test_anchor_with_positive_offset() -> None:
    assert cut(anchor="b", anchor_offset=2) == Window(3, ["d", "e"], None)


def test_anchor_with_negative_offset() -> None:
    assert cut(anchor="c", anchor_offset=-1, limit=2) == Window(1, ["b", "c"], None)


def test_anchor_offset_before_the_start_is_clamped_to_zero() -> None:
    assert cut(anchor="b", anchor_offset=-5, limit=2) == Window(0, ["a", "b"], None)


def test_anchor_offset_past_the_end_is_empty() -> None:
    assert cut(anchor="d", anchor_offset=3) == Window(6, [], None)


def test_anchor_not_found() -> None:
    error = method_error("anchorNotFound", cut, anchor="zz")
    assert error.to_arguments() == {
        "type": "anchorNotFound",
        "description": "'zz' is not in the results",
    }


# Window: limits


def test_limit_above_the_maximum_is_clamped_and_reported() -> None:
    assert cut(limit=4, max_limit=2) == Window(0, ["a", "b"], 2)


def test_no_limit_with_a_maximum_is_clamped_and_reported() -> None:
    assert cut(position=2, max_limit=2) == Window(2, ["c", "d"], 2)


def test_limit_within_the_maximum_is_not_reported() -> None:
    assert cut(limit=2, max_limit=2) == Window(0, ["a", "b"], None)
    assert cut(limit=1, max_limit=3) == Window(0, ["a"], None)


def test_negative_limit_is_invalid_arguments_in_parse_query() -> None:
    error = method_error("invalidArguments", parse_query, {"accountId": "A1", "limit": -1})
    assert error.extra == {"arguments": ["limit"]}


def test_negative_limit_reaching_window_is_a_bug() -> None:
    with pytest.raises(ValueError, match="negative limit"):
        cut(limit=-1)


# queryChanges

CURRENT = ["m1", "m2", "m3", "m4", "m5"]


def changes(
    changed: set[str],
    *,
    up_to_id: str | None = None,
    max_changes: int | None = None,
    immutable_query: bool = False,
) -> QueryChangesResult:
    return query_changes(
        changed=changed,
        current=CURRENT,
        up_to_id=up_to_id,
        max_changes=max_changes,
        immutable_query=immutable_query,
    )


def test_no_changes() -> None:
    assert changes(set()) == QueryChangesResult(removed=[], added=[])


def test_changed_ids_are_removed_and_those_still_present_added_at_their_index() -> None:
    # m4 was updated, "gone" destroyed, m1 created.
    assert changes({"m4", "gone", "m1"}) == QueryChangesResult(
        removed=["gone", "m1", "m4"],
        added=[AddedItem("m1", 0), AddedItem("m4", 3)],
    )


def test_splicing_the_answer_into_the_old_results_gives_the_new_results() -> None:
    old = ["m2", "x", "m4", "m3", "m5"]  # x destroyed, m4 moved, m1 created
    result = changes({"x", "m4", "m1"})
    spliced = [id_ for id_ in old if id_ not in result.removed]
    for item in result.added:
        spliced.insert(item.index, item.id)
    assert spliced == CURRENT


def test_up_to_id_is_ignored_for_a_mutable_query() -> None:
    assert changes({"m2", "m5"}, up_to_id="m3") == QueryChangesResult(
        removed=["m2", "m5"], added=[AddedItem("m2", 1), AddedItem("m5", 4)]
    )


def test_up_to_id_omits_present_ids_after_it_for_an_immutable_query() -> None:
    result = changes({"m2", "m3", "m5", "gone"}, up_to_id="m3", immutable_query=True)
    assert result == QueryChangesResult(
        removed=["gone", "m2", "m3"], added=[AddedItem("m2", 1), AddedItem("m3", 2)]
    )


def test_up_to_id_not_in_the_results_is_ignored() -> None:
    result = changes({"m5"}, up_to_id="elsewhere", immutable_query=True)
    assert result == QueryChangesResult(removed=["m5"], added=[AddedItem("m5", 4)])


def test_max_changes_counts_removed_and_added() -> None:
    assert changes({"m1", "m2"}, max_changes=4).removed == ["m1", "m2"]
    error = method_error("tooManyChanges", changes, {"m1", "m2"}, max_changes=3)
    assert error.description == "4 changes are more than maxChanges 3"


def test_max_changes_zero_allows_no_changes_only() -> None:
    assert changes(set(), max_changes=0) == QueryChangesResult([], [])
    method_error("tooManyChanges", changes, {"gone"}, max_changes=0)


def test_max_changes_counts_after_up_to_id() -> None:
    result = changes({"m4", "m5"}, up_to_id="m2", immutable_query=True, max_changes=0)
    assert result == QueryChangesResult([], [])


# Collations


def test_supported_collations_and_default() -> None:
    assert SUPPORTED_COLLATIONS == ("i;ascii-casemap", "i;octet", "i;unicode-casemap")
    # RFC 8620 5.5: the default MUST be unicode-aware and SHOULD be case insensitive.
    assert DEFAULT_COLLATION == "i;unicode-casemap"
    assert resolve_collation(None) == "i;unicode-casemap"
    assert resolve_collation("i;octet") == "i;octet"


def test_unknown_collation_is_unsupported_sort() -> None:
    method_error("unsupportedSort", resolve_collation, "i;basic")
    method_error("unsupportedSort", collation_key, "x", "en")


def test_octet_is_case_sensitive_by_code_point() -> None:
    words = ["b", "B", "a", "é", "A"]
    assert sorted(words, key=lambda w: collation_key(w, "i;octet")) == ["A", "B", "a", "b", "é"]


def test_ascii_casemap_folds_ascii_only() -> None:
    assert collation_key("Inbox", "i;ascii-casemap") == collation_key("INBOX", "i;ascii-casemap")
    assert collation_key("É", "i;ascii-casemap") != collation_key("é", "i;ascii-casemap")


def test_ascii_casemap_upper_cases_as_rfc_4790_says() -> None:
    # After a-z become A-Z, "_" (0x5F) sorts after every letter; lower-casing would not.
    words = ["a_", "ab"]
    assert sorted(words, key=lambda w: collation_key(w, "i;ascii-casemap")) == ["ab", "a_"]


def test_unicode_casemap_folds_case_beyond_ascii() -> None:
    assert collation_key("É", "i;unicode-casemap") == collation_key("é", "i;unicode-casemap")
    assert collation_key("ǅ", "i;unicode-casemap") == collation_key("ǆ", "i;unicode-casemap")
    assert collation_key("Ωμέγα", "i;unicode-casemap") == collation_key(
        "ΩΜΈΓΑ", "i;unicode-casemap"
    )


def test_unicode_casemap_orders_accents_after_the_base_letter() -> None:
    words = ["f", "é", "E", "e"]
    ordered = sorted(words, key=lambda w: (collation_key(w, "i;unicode-casemap"), w))
    assert ordered == ["E", "e", "é", "f"]


def test_unicode_casemap_uses_simple_titlecase() -> None:
    # RFC 5051 uses UnicodeData.txt's simple mappings: "ß" has none, so it stays.
    assert collation_key("ß", "i;unicode-casemap") == "ß"
    assert collation_key("ﬁ", "i;unicode-casemap") == "FI"
    words = ["a_", "ab"]
    assert sorted(words, key=lambda w: collation_key(w, "i;unicode-casemap")) == ["ab", "a_"]
