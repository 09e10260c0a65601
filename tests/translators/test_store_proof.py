"""The reading of STORE answers and of the proof's checks (store_proof), on responses shaped
as RFC 7162 3.1.3, 3.1.4.1 and 3.2.6 show them; the proof against real servers is in
test_email_set_proof.py."""

from __future__ import annotations

import pytest

from gateway.imap.connection import Result
from gateway.imap.messages import store_answers, uid_changed_since
from gateway.imap.responses.fetch import fetches_from_raw
from gateway.imap.responses.tokens import Tagged, parse_response
from gateway.translators.email.store_proof import checks, proven

ANSWERS = [
    b"* 1 FETCH (UID 5 MODSEQ (25) FLAGS (\\Seen $Forwarded))",
    b"* 2 FETCH (FLAGS () UID 6 MODSEQ (26))",
    b"* 3 FETCH (UID 7 FLAGS (\\Seen))",
    b"* 4 FETCH (UID 8 X-GUID abc MODSEQ (3) FLAGS (\\Deleted))",
    b"* 6 FETCH (modseq (7) uid 10 flags (x))",
]


def result(*raws: bytes) -> Result:
    tagged = parse_response(b"A1 OK done")
    assert isinstance(tagged, Tagged)
    return Result(list(raws), tagged)


@pytest.mark.parametrize("raw", ANSWERS)
def test_answers_read_as_the_fetch_parser_reads_them(raw: bytes) -> None:
    expected = {u: (i.flags, i.modseq) for u, i in fetches_from_raw([raw]).items()}
    assert store_answers([raw]) == (expected, True)


def test_anything_beside_one_fetch_per_message_is_not_clean() -> None:
    one = b"* 1 FETCH (UID 5 MODSEQ (25) FLAGS (\\Seen))"
    later = b"* 1 FETCH (UID 5 MODSEQ (27) FLAGS (\\Seen \\Flagged))"
    assert store_answers([one, b"* 2 EXISTS"])[1] is False
    assert store_answers([one, b"* 3 FETCH (FLAGS (\\Seen) MODSEQ (3))"])[1] is False
    assert store_answers([one, later]) == ({5: (["\\Seen", "\\Flagged"], 27)}, False)


def test_the_checks_cover_every_uid() -> None:
    """Every other UID from the mark, the answered ones from the least answer."""
    assert checks({3: 5, 4: 6, 9: 6}, 4) == [("1:2,5:8,10:*", 4), ("3:4,9", 5)]
    assert checks({}, 4) is None
    assert checks({n: 5 for n in range(1, 40_000, 2)}, 4) is None  # too fragmented
    command = uid_changed_since("1:2,5:*", 4)
    assert command.redacted() == "UID FETCH 1:2,5:* (UID) (CHANGEDSINCE 4 VANISHED)"


def test_only_the_answers_as_answered_prove() -> None:
    answered = {3: 5, 4: 6}
    assert proven([result(), result(b"* 2 FETCH (UID 4 MODSEQ (6))")], answered)
    assert not proven([result(b"* 1 FETCH (UID 1 MODSEQ (5))")], answered)
    assert not proven([result(b"* 2 FETCH (UID 4 MODSEQ (7))")], answered)
    assert not proven([result(b"* VANISHED (EARLIER) 2")], answered)
    assert not proven([result(b"* 3 EXISTS")], answered)
    assert not proven([result(b"* 2 FETCH (MODSEQ (6))")], answered)
    twice = b"* 2 FETCH (UID 4 MODSEQ (6))"
    assert proven([result(twice, twice)], answered)  # n:* names the last message too
    assert not proven([result(twice, b"* 2 FETCH (UID 4 MODSEQ (7))")], answered)
