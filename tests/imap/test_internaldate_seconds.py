"""INTERNALDATE read as seconds (what the index keeps) equals the datetime reading's
``int(timestamp())``, and refuses exactly what it refuses, on generated and odd forms."""

from __future__ import annotations

import random

import pytest

from gateway.imap.dates import MONTHS
from gateway.imap.errors import ProtocolError
from gateway.imap.responses.fetch import FetchItem


def reading(value: bytes) -> tuple[str, object]:
    """What each reading gives: the value, or the error's message."""
    item = FetchItem(1, {"INTERNALDATE": value})
    try:
        when = item.internaldate
        slow: tuple[str, object] = ("ok", None if when is None else int(when.timestamp()))
    except ProtocolError as exc:
        slow = ("error", str(exc))
    try:
        fast: tuple[str, object] = ("ok", item.internaldate_seconds)
    except ProtocolError as exc:
        fast = ("error", str(exc))
    assert fast == slow, value
    return fast


def test_generated_dates_read_alike() -> None:
    rng = random.Random(16)
    for _ in range(20_000):
        day = rng.choice([rng.randint(1, 31), rng.randint(0, 99)])
        month = rng.choice([*MONTHS, "feb", "FEB", "Foo"])
        year = rng.choice([rng.randint(1900, 2100), rng.randint(0, 9999), 2000, 2024, 1900])
        hour, minute, second = rng.randint(0, 25), rng.randint(0, 61), rng.randint(0, 61)
        sign = rng.choice("+-")
        zone = rng.choice([rng.randint(0, 2400), rng.randint(0, 9999), 0, 530, 2359, 2400])
        pad = f"{day:2d}" if day < 10 and rng.random() < 0.5 else f"{day:02d}"
        text = f"{pad}-{month}-{year:04d} {hour:02d}:{minute:02d}:{second:02d} {sign}{zone:04d}"
        reading(text.encode())


@pytest.mark.parametrize(
    "value",
    [
        b"29-Feb-2024 12:00:00 +0000",
        b"29-Feb-2023 12:00:00 +0000",
        b"31-Apr-2024 12:00:00 +0000",
        b"01-Jan-0001 00:00:00 +0100",
        b"31-Dec-9999 23:59:59 -2359",
        b"01-Jan-1970 00:00:00 +0000",
        b"31-Dec-1969 23:59:59 +0000",
        b" 7-Feb-2025 23:59:59 +0530",
        b"07-Feb-2025 24:00:00 +0000",
        b"07-Feb-2025 23:59:60 +0000",
        b"07-Feb-2025 23:60:00 +0000",
        b"07-Feb-2025 23:00:00 +2400",
        b"07-Feb-2025 23:00:00 -2360",
        b"00-Feb-2025 23:00:00 +0000",
        b"07-Feb-0000 23:00:00 +0000",
        b"7-Feb-2025 23:59:59 +0530",
        b"07-Fbr-2025 23:59:59 +0530",
        b"07-Feb-2025 23:59:59",
        b"07-Feb-2025T23:59:59 +0000",
        b"",
    ],
)
def test_odd_dates_read_alike(value: bytes) -> None:
    reading(value)


def test_values_of_other_types_are_refused_alike() -> None:
    for value in ("07-Feb-2025 23:59:59 +0000", ["x"], None):
        item = FetchItem(1, {"INTERNALDATE": value})
        if value is None:
            assert item.internaldate_seconds is None and item.internaldate is None
            continue
        with pytest.raises(ProtocolError):
            _ = item.internaldate
        with pytest.raises(ProtocolError):
            _ = item.internaldate_seconds


def test_a_known_instant() -> None:
    item = FetchItem(1, {"INTERNALDATE": b"17-Jul-1996 02:44:25 -0700"})
    assert item.internaldate_seconds == 837596665
