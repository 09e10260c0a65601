"""The first sync's FETCH reader (fetches_from_raw) gives exactly what the generic parser gives.

Its quick path reads the common shape without the token tree and hands anything else to the
generic parser; whatever the input, the result (or the ProtocolError) must be the same as
``fetches_by_uid`` over ``parse_response``. Checked on a corpus of odd forms and on thousands
of responses generated from the grammar's pieces, malformed ones among them.
"""

from __future__ import annotations

import random

import pytest

from gateway.imap.errors import ProtocolError
from gateway.imap.responses.fetch import (
    FetchItem,
    _quick_fetch,
    _sync_fetch,
    fetches_by_uid,
    fetches_from_raw,
)
from gateway.imap.responses.tokens import Untagged, parse_response

HEADER = b"Message-ID: <a@b>\r\nSubject: hi\r\n\r\n"
DOVECOT = (
    b'* 3 FETCH (UID 12 FLAGS (\\Seen $Forwarded) INTERNALDATE "01-Nov-2024 08:00:00 +0100" '
    b"RFC822.SIZE 2345 BODY[HEADER.FIELDS (MESSAGE-ID IN-REPLY-TO REFERENCES SUBJECT)]<0> {%d}"
    b"\r\n%s X-GUID 3b1f2d0a9c8e7f6a5b4c3d2e1f0a9b8c)" % (len(HEADER), HEADER)
)
# As Dovecot 2.3 words it (captured): X-GUID before the section.
DOVECOT_23 = (
    b'* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) INTERNALDATE "10-Apr-2025 01:52:26 +0000" '
    b"RFC822.SIZE 2470 X-GUID 1796668487.M408904P4233.vm,S=2409,W=2470 "
    b"BODY[HEADER.FIELDS (MESSAGE-ID IN-REPLY-TO REFERENCES SUBJECT)]<0> {%d}\r\n%s)"
    % (len(HEADER), HEADER)
)

ODD = [
    DOVECOT,
    DOVECOT_23,
    b"* 1 FETCH (UID 1 FLAGS ())",
    b"* 1 FETCH (UID 1 FLAGS (\\Seen \\* NIL nil $Junk))",
    b"* 1 fetch (uid 7 modseq (12345678901234))",
    b'* 1 FETCH (UID 1 X-GUID "quoted guid")',
    b'* 1 FETCH (UID 1 X-GUID "with \\"escapes\\" and \\\\")',
    b'* 1 FETCH (UID 1 X-GUID "")',
    b"* 1 FETCH (UID 1 X-GUID NIL)",
    b'* 1 FETCH (UID 1 X-GUID "NIL")',
    b"* 1 FETCH (UID 1 BODY[] {0}\r\n)",
    b"* 1 FETCH (UID 1 BODY[] {5}\r\n) ( ))",
    b"* 1 FETCH (UID 1 BODY[] {5}\r\nabc)",
    b"* 1 FETCH (UID 1 BODY[] {50}\r\nabc)",
    b"* 1 FETCH (UID 1 BINARY[1] ~{3}\r\nabc)",
    b"* 1 FETCH (UID 1 BINARY.SIZE[1] 42)",
    b"* 1 FETCH (UID 1 body.peek[header.fields (subject)]<0> {3}\r\nabc)",
    b'* 1 FETCH (UID 1 BODY[HEADER.FIELDS ("SUBJECT")] {3}\r\nabc)',
    b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT] {3}\r\nabc)",
    b"* 1 FETCH (UID 1 BODY[1]<12> NIL)",
    b"* 1 FETCH (UID 1 BODY[1]x NIL)",
    b"* 1 FETCH (UID 1 EMAILID (M6d99ac3275bb4e) THREADID NIL)",
    b'* 1 FETCH (UID 1 ENVELOPE ("date" "subj" NIL NIL NIL NIL NIL NIL NIL "<id>"))',
    b"* 1 FETCH (UID 1 FLAGS (\\Seen) UID 2)",
    b"* 1 FETCH (FLAGS (\\Seen))",
    b"* 1 FETCH ()",
    b"* 0 FETCH (UID 1)",
    b"* 01 FETCH (UID 1)",
    b"* 1 FETCH (UID 1 )",
    b"* 1 FETCH ( UID 1)",
    b"* 1 FETCH (UID  1)",
    b"* 1 FETCH (UID 1) ",
    b"* 1 FETCH (UID 1))",
    b"* 1 FETCH (UID 1",
    b"* 1 FETCH (UID 1 FLAGS (\\Seen)",
    b"* 1 FETCH (UID 1 FLAGS (\\))",
    b"* 1 FETCH (UID 1 FLAGS (a(b)))",
    b"* 1 FETCH (UID 1 NIL 2)",
    b"* 1 FETCH (UID 1 X-A ])",
    b"* 1 FETCH (UID 1 X-A a]b)",
    b"* 1 FETCH (UID 1 X-A a[b)",
    b"* 1 FETCH (UID 1 X-A \\Flag)",
    b'* 1 FETCH (UID 1 X-A "caf\xc3\xa9")',
    b"* 1 FETCH (UID 1 X-A caf\xc3\xa9)",
    b"* 1 FETCH (UID 1 X_A 1)",
    b"* 1 FETCH (UID 1 X-A 1)(X)",
    b"* 1 FETCH UID 1",
    b"* 3 EXISTS",
    b"* OK [HIGHESTMODSEQ 5] fine",
    b"* 1 EXPUNGE",
    b"* VANISHED (EARLIER) 1:3",
]


def generic(raws: list[bytes]) -> dict[int, FetchItem]:
    parsed = [parse_response(raw) for raw in raws]
    assert all(isinstance(p, Untagged) for p in parsed)
    return fetches_by_uid(p for p in parsed if isinstance(p, Untagged))


def outcome(read: object, raws: list[bytes]) -> object:
    """The reader's result, or the class of ProtocolError it raised."""
    try:
        return read(raws)  # type: ignore[operator]
    except ProtocolError:
        return ProtocolError


@pytest.mark.parametrize("raw", ODD, ids=[r[:40].decode("latin-1") for r in ODD])
def test_odd_forms_read_as_the_generic_parser_reads_them(raw: bytes) -> None:
    assert outcome(fetches_from_raw, [raw]) == outcome(generic, [raw])


def test_the_common_shape_takes_the_quick_path() -> None:
    item = _quick_fetch(DOVECOT)
    assert item is not None
    assert (item.uid, item.flags, item.size, item.x_guid) == (
        12,
        ["\\Seen", "$Forwarded"],
        2345,
        "3b1f2d0a9c8e7f6a5b4c3d2e1f0a9b8c",
    )
    assert item.header_fields() == HEADER
    assert item.internaldate is not None and item.internaldate.isoformat() == (
        "2024-11-01T08:00:00+01:00"
    )


def test_later_responses_for_a_uid_merge_as_before() -> None:
    raws = [DOVECOT, b"* 3 FETCH (UID 12 FLAGS (\\Deleted))", b"* 4 FETCH (FLAGS (x))"]
    merged = fetches_from_raw(raws)
    assert merged == generic(raws)
    assert merged[12].flags == ["\\Deleted"] and merged[12].size == 2345


# Pieces the generator joins: item names, values (good and odd), separators.
NAMES = [
    b"UID",
    b"FLAGS",
    b"X-GUID",
    b"RFC822.SIZE",
    b"MODSEQ",
    b"BODY[]",
    b"BODY[HEADER.FIELDS (SUBJECT FROM)]<0>",
    b"BODY[1.MIME]",
    b"body[text]<10>",
    b"BINARY[2]",
    b"NIL",
    b"X_Y",
    b"BODY[HEADER.FIELDS (A]",
    b'BODY[HEADER.FIELDS ("A")]',
    b"a[b]",
]


def value(rng: random.Random) -> bytes:
    kind = rng.randrange(14)
    if kind == 0:
        return str(rng.randrange(1, 10**12)).encode()
    if kind == 1:
        pool = [b"\\Seen", b"\\*", b"$Junk", b"NIL", b"\\", b"a]", b"x(y"]
        flags = rng.sample(pool, rng.randrange(4))
        return b"(" + b" ".join(flags) + b")"
    if kind == 2:
        inner = rng.choice([b"", b"plain", b'a\\"b', b"c\\\\", b"NIL", b"caf\xc3\xa9"])
        return b'"' + inner + b'"'
    if kind == 3:
        data = rng.choice([b"", b"abc", b")", b"{3}\r\nxyz", b"\r\n\r\n", b"* 2 FETCH (UID 9)"])
        if rng.random() < 0.1:
            return b"{%d}\r\n%s" % (len(data) + rng.choice([1, 5]), data)
        return b"{%d}\r\n%s" % (len(data), data)
    if kind == 4:
        return b"~{3}\r\nabc"
    if kind == 5:
        return rng.choice([b"NIL", b"nil", b"Nil"])
    if kind == 6:
        return b'("a" NIL (b c) {1}\r\nx)'
    if kind == 7:
        return rng.choice([b"\\Flag", b"a[b", b"]", b"caf\xc3\xa9", b"x)y"])
    if kind == 8:
        return b"()"
    if kind == 9:
        return b'"unterminated'
    return rng.choice([b"atom", b"M6d99ac3275bb4e", b"12345", b"(12345)"])


def response(rng: random.Random) -> bytes:
    pairs = []
    if rng.random() < 0.9:
        pairs.append(b"UID " + str(rng.randrange(1, 40)).encode())
    for _ in range(rng.randrange(6)):
        pairs.append(rng.choice(NAMES) + b" " + value(rng))
    rng.shuffle(pairs)
    sep = b" " if rng.random() < 0.95 else rng.choice([b"  ", b""])
    body = sep.join(pairs)
    number = rng.choice([b"1", b"2", b"17", b"0", b"01"]) if rng.random() < 0.2 else b"5"
    head = b"* " + number + b" " + rng.choice([b"FETCH", b"fetch", b"FETCH", b"EXISTS"])
    tail = b")" if rng.random() < 0.93 else rng.choice([b"", b") ", b"))", b" )"])
    return head + b" (" + body + tail


def test_generated_responses_read_as_the_generic_parser_reads_them() -> None:
    rng = random.Random(16)
    quick = 0
    for _ in range(6000):
        raws = [response(rng) for _ in range(rng.randrange(1, 4))]
        assert outcome(fetches_from_raw, raws) == outcome(generic, raws), raws
        quick += sum(1 for r in raws if _quick_fetch(r) is not None)
    # The generator exercises both paths.
    assert 1000 < quick < 10000


@pytest.mark.parametrize(
    ("date", "iso"),
    [
        (b"17-Jul-1996 02:44:25 -0700", "1996-07-17T02:44:25-07:00"),
        (b" 1-Jan-2025 00:00:00 +0530", "2025-01-01T00:00:00+05:30"),
        (b"01-jan-2025 23:59:59 +0000", "2025-01-01T23:59:59+00:00"),
        (b"31-Feb-2025 00:00:00 +0000", None),
        (b"01-Jan-2025 00:00:00 +2400", None),
        (b"01-Foo-2025 00:00:00 +0000", None),
    ],
)
def test_internaldate(date: bytes, iso: str | None) -> None:
    raw = b'* 1 FETCH (UID 1 INTERNALDATE "' + date + b'")'
    [item] = fetches_from_raw([raw]).values()
    if iso is None:
        with pytest.raises(ProtocolError):
            item.internaldate  # noqa: B018
    else:
        assert item.internaldate is not None and item.internaldate.isoformat() == iso


def sync_shaped(rng: random.Random) -> bytes:
    """The first sync's own answer as Dovecot words it, now and then bent out of shape."""
    flags = rng.choice([b"", b"\\Seen", b"\\Seen $Forwarded", b"NIL nil", b"\\*", b"a]b", b"x y"])
    date = rng.choice([b"01-Nov-2024 08:00:00 +0100", b"", b'a\\"b', b"31-Feb-2024 00:00:00 +0000"])
    section = rng.choice(
        [
            b"BODY[HEADER.FIELDS (MESSAGE-ID IN-REPLY-TO REFERENCES SUBJECT)]<0>",
            b"BODY[HEADER.FIELDS (MESSAGE-ID IN-REPLY-TO REFERENCES SUBJECT DATE FROM)]",
            b"BODY[HEADER.FIELDS (SUBJECT)]<12>",
            b"body[header.fields (subject)]<0>",
            b'BODY[HEADER.FIELDS ("SUBJECT")]',
        ]
    )
    data = rng.choice([HEADER, b"", b")", b" X-GUID abc)", b"{3}\r\nabc", b"\r\n* 2 FETCH (UID 9)"])
    length = len(data) + (rng.choice([-1, 1, 7]) if rng.random() < 0.1 else 0)
    guids = [b" X-GUID 3b1f2d0a", b" X-GUID NIL", b"", b" X-GUID", b" X-GUID a[b", b" MODSEQ (5)"]
    tail = rng.choice(guids)
    head_guid = rng.choice([b"", b"", *guids])
    end = b")" if rng.random() < 0.95 else rng.choice([b"", b") ", b"))"])
    uid = rng.choice([b"12", b"7", b"0", b"012", b"99999999999999999999", b"1a"])
    number = rng.choice([b"3", b"3", b"0", b"03"])
    return (
        b"* "
        + number
        + b" FETCH (UID "
        + uid
        + b" FLAGS ("
        + flags
        + b') INTERNALDATE "'
        + date
        + b'" RFC822.SIZE 2345'
        + head_guid
        + b" "
        + section
        + b" {%d}\r\n" % max(length, 0)
        + data
        + tail
        + end
    )


def assert_known_as_read(item: FetchItem) -> None:
    """What the shape's reading kept typed is what the properties read (or they raise)."""
    try:
        read = (item.uid, item.flags, item.internaldate_seconds, item.size)
    except ProtocolError:
        assert item.known is None
    else:
        assert item.known == read


def test_the_first_syncs_shape_reads_as_the_generic_parser_reads_it() -> None:
    rng = random.Random(1616)
    whole = 0
    for _ in range(6000):
        raws = [sync_shaped(rng) for _ in range(rng.randrange(1, 3))]
        assert outcome(fetches_from_raw, raws) == outcome(generic, raws), raws
        for raw in raws:
            item = _sync_fetch(raw)
            if item is not None:
                whole += 1
                assert_known_as_read(item)
    # Both the two-match reading and the others are exercised.
    assert 150 < whole < 8000


@pytest.mark.parametrize("raw", [DOVECOT, DOVECOT_23])
def test_dovecots_answer_is_read_by_the_first_syncs_shape(raw: bytes) -> None:
    item = _sync_fetch(raw)
    assert item is not None and item == _quick_fetch(raw)
    assert fetches_from_raw([raw]) == generic([raw])
    assert item.x_guid is not None and item.header_fields() == HEADER
