"""UID FETCH with typed items: the octets of the command, and the answer found by item."""

from __future__ import annotations

import pytest

from gateway.imap.fetch import Attr, BodySection, uid_fetch
from gateway.imap.responses.fetch import parse_fetch
from gateway.imap.responses.tokens import Untagged, parse_response
from gateway.imap.sequence import UidSet, from_uid
from tests.imap.wire import wire


@pytest.mark.parametrize(
    ("section", "text"),
    [
        (BodySection(), "BODY.PEEK[]"),
        (BodySection("HEADER"), "BODY.PEEK[HEADER]"),
        (BodySection("TEXT", peek=False), "BODY[TEXT]"),
        (BodySection("1.2"), "BODY.PEEK[1.2]"),
        (BodySection("1.2.MIME"), "BODY.PEEK[1.2.MIME]"),
        (BodySection("2", partial=(0, 4096)), "BODY.PEEK[2]<0.4096>"),
        (BodySection(partial=(1200, 65536)), "BODY.PEEK[]<1200.65536>"),
        (BodySection(fields=("FROM", "SUBJECT")), "BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]"),
        (BodySection("3", fields=("Message-ID",)), "BODY.PEEK[3.HEADER.FIELDS (Message-ID)]"),
        (
            BodySection(fields=("SUBJECT",), partial=(0, 32768)),
            "BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.32768>",
        ),
    ],
)
def test_body_sections_as_rfc_3501_writes_them(section: BodySection, text: str) -> None:
    assert str(section) == text


@pytest.mark.parametrize(
    "bad",
    [
        {"section": "0"},
        {"section": "1.0"},
        {"section": "HEADER.FIELDS (FROM)"},
        {"section": "1]<0.5> BODY[2"},
        {"section": "TEXT", "fields": ("FROM",)},
        {"fields": ("FROM)]\r\nA2 LOGOUT",)},
        {"fields": ("Sub ject",)},
        {"partial": (0, 0)},
        {"partial": (-1, 10)},
    ],
)
def test_a_section_that_is_not_one_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BodySection(**bad)  # type: ignore[arg-type]


def test_uid_fetch_sends_the_items_in_the_order_given() -> None:
    items = [Attr.UID, Attr.FLAGS, Attr.INTERNALDATE, Attr.SIZE, BodySection(fields=("DATE",))]
    assert wire(uid_fetch("1:3,7", items)) == (
        b"A1 UID FETCH 1:3,7 (UID FLAGS INTERNALDATE RFC822.SIZE"
        b" BODY.PEEK[HEADER.FIELDS (DATE)])\r\n"
    )
    assert (
        wire(uid_fetch(from_uid(1), [Attr.UID, Attr.FLAGS])) == b"A1 UID FETCH 1:* (UID FLAGS)\r\n"
    )
    assert wire(uid_fetch(UidSet.of([4, 5, 6, 9]), [Attr.X_GUID])) == (
        b"A1 UID FETCH 4:6,9 (X-GUID)\r\n"
    )
    assert wire(uid_fetch(12, [Attr.EMAILID, Attr.THREADID, Attr.PREVIEW])) == (
        b"A1 UID FETCH 12 (EMAILID THREADID PREVIEW)\r\n"
    )


@pytest.mark.parametrize("uids", ["", "1 2", "1:3) (BODY[]", "0", "1,,2", "a"])
def test_uid_fetch_takes_no_text_but_a_sequence_set(uids: str) -> None:
    with pytest.raises(ValueError):
        uid_fetch(uids, [Attr.UID])


def test_uid_fetch_asks_for_something() -> None:
    with pytest.raises(ValueError):
        uid_fetch(1, [])


def test_the_answer_is_found_by_the_item_asked_for() -> None:
    """RFC 3501 7.4.2: BODY.PEEK[...]<0.N> is answered as BODY[...]<0>."""
    fields = BodySection(fields=("SUBJECT",), partial=(0, 100))
    part = BodySection("1")
    raw = (
        b"* 3 FETCH (UID 9 BODY[HEADER.FIELDS (SUBJECT)]<0> {14}\r\nSubject: x\r\n\r\n"
        b' BODY[1] "hi" BODYSTRUCTURE ("TEXT" "PLAIN" NIL NIL NIL "7BIT" 2 1))'
    )
    response = parse_response(raw)
    assert isinstance(response, Untagged)
    item = parse_fetch(response)
    assert item.section(fields) == b"Subject: x\r\n\r\n"
    assert item.section(part) == b"hi"
    assert part in item and BodySection("2") not in item
    assert Attr.BODYSTRUCTURE in item and item.get(Attr.BODYSTRUCTURE) is not None
