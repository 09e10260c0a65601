"""APPEND, UID STORE, COPY, MOVE and EXPUNGE: the octets of each builder."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.imap.messages import append, remove, uid_copy, uid_expunge, uid_store
from tests.imap.wire import wire


def test_append_with_flags_and_date() -> None:
    moment = datetime(2024, 3, 5, 7, 8, 9, tzinfo=timezone(timedelta(hours=-7)))
    command = append(
        "Sent", b"Subject: x\r\n\r\nhi\r\n", flags=["\\Seen", "$Forwarded"], received_at=moment,
        utf8=False,
    )  # fmt: skip
    assert wire(command, literal_plus=True) == (
        b'A1 APPEND Sent (\\Seen $Forwarded) "05-Mar-2024 07:08:09 -0700" {18+}\r\n'
        b"<nonsync>Subject: x\r\n\r\nhi\r\n\r\n"
    )


def test_append_without_date_to_a_non_ascii_name() -> None:
    command = append("Entwürfe", b"x", flags=[], received_at=None, utf8=False)
    assert wire(command) == b"A1 APPEND Entw&APw-rfe () {1}\r\n<sync>x\r\n"
    command = append("Entwürfe", b"x", flags=[], received_at=None, utf8=True)
    assert wire(command) == b"A1 APPEND {9}\r\n<sync>Entw\xc3\xbcrfe () {1}\r\n<sync>x\r\n"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"mode": "+"}, b"A1 UID STORE 1:3 +FLAGS (\\Seen $x)\r\n"),
        ({"mode": "-"}, b"A1 UID STORE 1:3 -FLAGS (\\Seen $x)\r\n"),
        ({"mode": "+", "silent": True}, b"A1 UID STORE 1:3 +FLAGS.SILENT (\\Seen $x)\r\n"),
        (
            {"mode": "", "unchanged_since": 12345},
            b"A1 UID STORE 1:3 (UNCHANGEDSINCE 12345) FLAGS (\\Seen $x)\r\n",
        ),
    ],
)
def test_uid_store(options: dict[str, object], expected: bytes) -> None:
    assert wire(uid_store([1, 2, 3], ["\\Seen", "$x"], **options)) == expected  # type: ignore[arg-type]


def test_uid_store_refuses_what_is_not_a_flag() -> None:
    with pytest.raises(ValueError):
        uid_store(1, ["two words"], mode="+")


def test_remove_flags_and_expunges_exactly_the_uids() -> None:
    store, expunge = remove("4,9:11")
    assert wire(store) == b"A1 UID STORE 4,9:11 +FLAGS.SILENT (\\Deleted)\r\n"
    assert wire(expunge) == b"A1 UID EXPUNGE 4,9:11\r\n"
    assert wire(uid_expunge(7)) == b"A1 UID EXPUNGE 7\r\n"


def test_copy_and_move() -> None:
    assert wire(uid_copy(5, "Archive/2024", utf8=False)) == b"A1 UID COPY 5 Archive/2024\r\n"
    assert wire(uid_copy("5:6", "To do", utf8=False, move=True)) == (b'A1 UID MOVE 5:6 "To do"\r\n')
    assert wire(uid_copy(5, "inbox", utf8=False)) == b"A1 UID COPY 5 INBOX\r\n"
