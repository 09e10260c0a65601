"""The reading of STORE answers and of the proof's checks (store_proof), on responses shaped
as RFC 7162 3.1.3, 3.1.4.1 and 3.2.6 show them; the proof against real servers is in
test_email_set_proof.py."""

from __future__ import annotations

import pytest

from gateway.imap.messages import store_answers, uid_changed_since
from gateway.imap.responses.fetch import fetches_from_raw
from gateway.translators.email.store_proof import proven, split

ANSWERS = [
    b"* 1 FETCH (UID 5 MODSEQ (25) FLAGS (\\Seen $Forwarded))",
    b"* 2 FETCH (FLAGS () UID 6 MODSEQ (26))",
    b"* 3 FETCH (UID 7 FLAGS (\\Seen))",
    b"* 4 FETCH (UID 8 X-GUID abc MODSEQ (3) FLAGS (\\Deleted))",
    b"* 6 FETCH (modseq (7) uid 10 flags (x))",
]


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


def test_the_check_is_every_uid_changed_since_the_mark() -> None:
    command = uid_changed_since("1:*", 4)
    assert command.redacted() == "UID FETCH 1:* (UID) (CHANGEDSINCE 4 VANISHED)"


def test_the_checks_reports_are_told_from_the_answers() -> None:
    answer = b"* 1 FETCH (UID 5 MODSEQ (25) FLAGS (\\Seen))"
    other = b"* 2 FETCH (FLAGS (\\Flagged) UID 6 MODSEQ (26))"  # another session's
    report = b"* 1 FETCH (UID 5 MODSEQ (25))"
    items, clean, reports = split([answer, other, report, b"* 2 FETCH (UID 6 MODSEQ (26))"])
    assert items == {5: (["\\Seen"], 25), 6: (["\\Flagged"], 26)}
    assert clean
    assert reports == {5: 25, 6: 26}
    assert split([answer, report, b"* VANISHED (EARLIER) 3"])[2] is None
    assert split([answer, report, b"* 3 EXISTS"])[1:] == (False, None)
    assert split([answer, report, b"* 1 FETCH (UID 5 MODSEQ (27))"])[2] is None
    assert split([answer, b"* 1 FETCH (MODSEQ (25) UID 5)"])[2] == {5: 25}  # other order


def test_only_the_answers_as_answered_prove() -> None:
    answered = {3: 5, 4: 6}
    assert proven({3: 5, 4: 6}, answered, 4)
    assert not proven({3: 5, 4: 6, 1: 5}, answered, 4)  # another message changed
    assert not proven({3: 5, 4: 7}, answered, 4)  # an answered one changed again
    assert not proven({4: 6}, answered, 4)  # the check missed an answer: ran before it
    assert proven({4: 6}, answered, 5)  # 3's answer is no change since the mark
    assert not proven({}, {3: 4}, 4)  # nothing moved past the mark
