"""UidSet parsing, formatting, membership and chunking (RFC 3501 9 sequence-set)."""

from __future__ import annotations

import random

import pytest

from gateway.imap.sequence import MAX_NUMBER, UidSet, format_uid_set, parse_ranges, split_uid_set


def test_parse_sorts_and_merges() -> None:
    uids = UidSet.parse("7:9,1:3,5,4")
    assert uids.ranges == ((1, 5), (7, 9))
    assert list(uids) == [1, 2, 3, 4, 5, 7, 8, 9]
    assert len(uids) == 8
    assert str(uids) == "1:5,7:9"


def test_reversed_range_means_the_same_range() -> None:
    assert UidSet.parse("4:2") == UidSet.parse("2:4")


def test_overlapping_ranges_merge() -> None:
    assert UidSet.parse("1:10,5:20,21").ranges == ((1, 21),)


def test_star_needs_a_value() -> None:
    with pytest.raises(ValueError):
        UidSet.parse("1:*")
    assert UidSet.parse("5:*", star=7).ranges == ((5, 7),)
    assert UidSet.parse("*:5", star=3).ranges == ((3, 5),)


@pytest.mark.parametrize(
    "text", ["", ",", "1,", "1::2", "0", "1:0", "01", "-1", " 1", "1 ", "a", "4294967296", "\u0661"]
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        UidSet.parse(text)


def test_largest_number_is_accepted() -> None:
    assert UidSet.parse("4294967295").max == MAX_NUMBER


def test_of_deduplicates() -> None:
    assert UidSet.of([5, 3, 3, 4, 10]).ranges == ((3, 5), (10, 10))


def test_membership() -> None:
    uids = UidSet.parse("2:4,10,20:30")
    assert [n for n in range(35) if n in uids] == [2, 3, 4, 10, *range(20, 31)]
    assert "3" not in uids


def test_min_max_and_empty() -> None:
    assert (UidSet.parse("9,3:5").min, UidSet.parse("9,3:5").max) == (3, 9)
    empty = UidSet()
    assert not empty
    assert len(empty) == 0
    with pytest.raises(ValueError):
        _ = empty.min
    with pytest.raises(ValueError):
        _ = empty.max


def test_union() -> None:
    assert (UidSet.parse("1:3") | UidSet.parse("4,9")).ranges == ((1, 4), (9, 9))


def test_huge_ranges_stay_small() -> None:
    uids = UidSet.parse("1:4294967295")
    assert len(uids) == MAX_NUMBER
    assert 123456789 in uids


def test_constructor_rejects_unnormalised_ranges() -> None:
    for ranges in (((3, 4), (1, 2)), ((1, 2), (3, 4)), ((2, 1),), ((0, 1),)):
        with pytest.raises(ValueError):
            UidSet(ranges)


def test_parse_ranges_keeps_order() -> None:
    assert parse_ranges("304,319:320,5:3") == [(304, 304), (319, 320), (3, 5)]


def test_format_uid_set() -> None:
    assert format_uid_set([1, 2, 3, 5]) == "1:3,5"
    assert format_uid_set([9, 7, 8, 1]) == "1,7:9"
    assert format_uid_set(UidSet.parse("3,1")) == "1,3"
    with pytest.raises(ValueError):
        format_uid_set([])
    with pytest.raises(ValueError):
        format_uid_set([0])


def test_split_small_set_is_one_chunk() -> None:
    assert split_uid_set([1, 2, 3, 5]) == ["1:3,5"]
    assert split_uid_set([]) == []


def test_split_respects_the_limit_and_covers_the_set() -> None:
    numbers = random.Random(5).sample(range(1, 2_000_000), 20_000)
    chunks = split_uid_set(numbers, max_octets=1000)
    assert len(chunks) > 1
    assert all(len(chunk) <= 1000 for chunk in chunks)
    covered = UidSet.from_ranges(r for chunk in chunks for r in parse_ranges(chunk))
    assert covered == UidSet.of(numbers)


def test_split_fills_chunks_up_to_the_limit() -> None:
    assert split_uid_set([1, 3, 5, 7, 9], max_octets=21) == ["1,3,5,7,9"]
    # "1,3,5,7,9,11,13,15,17" is 21 octets; ",19" would make 24.
    assert split_uid_set(range(1, 200, 2), max_octets=21)[:2] == [
        "1,3,5,7,9,11,13,15,17",
        "19,21,23,25,27,29,31",
    ]


def test_split_rejects_a_limit_too_small_for_one_range() -> None:
    with pytest.raises(ValueError):
        split_uid_set([1], max_octets=20)


def test_pages_cover_the_set_in_order_without_exceeding_the_size() -> None:
    uids = UidSet.parse("1:5,8,10:13")
    pages = list(uids.pages(3))
    assert [str(p) for p in pages] == ["1:3", "4:5,8", "10:12", "13"]
    assert [n for p in pages for n in p] == list(uids)
    assert list(UidSet().pages(3)) == []
    assert [str(p) for p in UidSet.parse("1:6").pages(6)] == ["1:6"]
