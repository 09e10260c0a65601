"""ResponseFramer on Dovecot-style transcripts, fed whole, byte by byte and in random chunks."""

from __future__ import annotations

import random

import pytest

from gateway.imap.errors import ProtocolError
from gateway.imap.framing import ResponseFramer
from gateway.imap.responses.tokens import parse_response

DOVECOT_CAPS = (
    b"IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    b"THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    b"NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
    b"WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW "
    b"STATUS=SIZE SAVEDATE LITERAL+ NOTIFY METADATA SPECIAL-USE"
)

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"Subject: literal {5}\r\n"
    b"\r\n"
    b"* 3 EXPUNGE\r\n"
    b"a line that looks like a literal announcement {5}\r\n"
    b"A7 OK not a completion\r\n"
)

# Each entry is one complete response as the framer must return it (no final CRLF).
GREETING_AND_LOGIN = [
    b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
    b"AUTH=PLAIN AUTH=LOGIN] Dovecot ready.",
    b"A1 OK [CAPABILITY " + DOVECOT_CAPS + b"] Logged in",
    b"* CAPABILITY " + DOVECOT_CAPS,
    b"A2 OK Capability completed (0.001 + 0.000 secs).",
]
LIST_WITH_STATUS = [
    b'* LIST (\\HasNoChildren) "/" INBOX',
    b"* STATUS INBOX (MESSAGES 300 UIDNEXT 301 UIDVALIDITY 1700000000 UNSEEN 2 "
    b"HIGHESTMODSEQ 715194045007 X-GUID 0c2e9b2b6f7c5e65a6120000a6fb4d2e)",
    b'* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
    b'* LIST (\\HasNoChildren \\Sent) "/" Sent',
    b'* LIST (\\HasNoChildren) "/" {12}\r\nLists/python',
    b'* LIST (\\HasNoChildren) "/" "Lists/Work &- Play"',
    b"A3 OK List completed (0.001 + 0.000 secs).",
]
SELECT_QRESYNC = [
    b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded $Junk)",
    b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded $Junk \\*)]"
    b" Flags permitted.",
    b"* 300 EXISTS",
    b"* 0 RECENT",
    b"* OK [UIDVALIDITY 1700000000] UIDs valid",
    b"* OK [UIDNEXT 301] Predicted next UID",
    b"* VANISHED (EARLIER) 41,43:116",
    b"* 12 FETCH (UID 12 FLAGS ($Forwarded \\Seen) MODSEQ (715194045007))",
    b"* OK [HIGHESTMODSEQ 715194045007] Highest",
    b"A4 OK [READ-WRITE] Select completed (0.002 + 0.000 + 0.001 secs).",
]
FETCH_LITERALS = [
    b"* 12 FETCH (UID 12 BODY[HEADER.FIELDS (SUBJECT FROM)] {36}\r\n"
    b"Subject: hi\r\nFrom: a@example.com\r\n\r\n)",
    b"* 12 FETCH (UID 12 FLAGS (\\Seen) BODY[] {%d}\r\n" % len(MESSAGE) + MESSAGE + b")",
    b"* 13 FETCH (UID 13 BINARY[1] ~{6}\r\n\x00\x01\r\n\xff\n BODY[]<0> {0}\r\n)",
    b"* 14 FETCH (UID 14 BODY[1] {3}\r\n{5} BODY[2] {2}\r\n\r\n)",
    b"A5 OK Fetch completed (0.001 + 0.000 secs).",
]
TRANSCRIPTS = {
    "greeting": GREETING_AND_LOGIN,
    "list": LIST_WITH_STATUS,
    "select": SELECT_QRESYNC,
    "fetch": FETCH_LITERALS,
    "all": GREETING_AND_LOGIN + LIST_WITH_STATUS + SELECT_QRESYNC + FETCH_LITERALS,
}


def stream_of(transcript: list[bytes]) -> bytes:
    return b"".join(response + b"\r\n" for response in transcript)


def framer() -> ResponseFramer:
    return ResponseFramer(max_line=4096, max_literal=1 << 20)


def feed_in_chunks(data: bytes, sizes: list[int]) -> list[bytes]:
    f = framer()
    out: list[bytes] = []
    position = 0
    for size in sizes:
        out.extend(f.feed(data[position : position + size]))
        position += size
    out.extend(f.feed(data[position:]))
    assert f.buffered == 0
    return out


def random_sizes(seed: int, total: int) -> list[int]:
    rng = random.Random(seed)
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(rng.randint(1, 40))
    return sizes


@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_whole_stream_gives_each_response_exactly(name: str) -> None:
    transcript = TRANSCRIPTS[name]
    assert feed_in_chunks(stream_of(transcript), []) == transcript


@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_byte_by_byte_gives_the_same_responses(name: str) -> None:
    stream = stream_of(TRANSCRIPTS[name])
    assert feed_in_chunks(stream, [1] * len(stream)) == TRANSCRIPTS[name]


@pytest.mark.parametrize("seed", [1, 7, 42, 2024])
@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_random_chunks_give_the_same_responses(name: str, seed: int) -> None:
    stream = stream_of(TRANSCRIPTS[name])
    assert feed_in_chunks(stream, random_sizes(seed, len(stream))) == TRANSCRIPTS[name]


def test_fixtures_are_valid_responses() -> None:
    # Guards the fixtures themselves: a wrong literal length would shift every later split.
    for response in TRANSCRIPTS["all"]:
        parse_response(response)


def test_split_exactly_between_cr_and_lf() -> None:
    f = framer()
    assert f.feed(b"* 3 EXISTS\r") == []
    assert f.feed(b"\n* 4 EXISTS\r\n") == [b"* 3 EXISTS", b"* 4 EXISTS"]


def test_literal_split_inside_announcement_and_data() -> None:
    f = framer()
    assert f.feed(b"* 1 FETCH (BODY[] {1") == []
    assert f.feed(b"0}\r") == []
    assert f.feed(b"\nabc\r\n") == []
    assert f.feed(b"defg") == []
    assert f.feed(b")\r\n") == [b"* 1 FETCH (BODY[] {10}\r\nabc\r\ndefg)"]


def test_literal_data_that_ends_in_cr_is_not_a_line_end() -> None:
    f = framer()
    assert f.feed(b"* 1 FETCH (BODY[] {1}\r\n\r") == []
    assert f.feed(b")\r\n") == [b"* 1 FETCH (BODY[] {1}\r\n\r)"]


def test_incomplete_response_is_kept_until_completed() -> None:
    f = framer()
    assert f.feed(b"* 1 EXISTS\r\n* 2 FETCH (UID 5") == [b"* 1 EXISTS"]
    assert f.buffered == len(b"* 2 FETCH (UID 5")
    assert f.feed(b")\r\n") == [b"* 2 FETCH (UID 5)"]
    assert f.buffered == 0


def test_multi_megabyte_literal_fed_in_small_chunks() -> None:
    body = bytes(range(256)) * (3 * 4096)  # 3 MiB with every octet value, CR and LF included
    stream = b"* 1 FETCH (BODY[] {%d}\r\n" % len(body) + body + b")\r\nA1 OK done\r\n"
    f = ResponseFramer(max_line=1024, max_literal=len(body))
    out: list[bytes] = []
    for start in range(0, len(stream), 65536):
        out.extend(f.feed(stream[start : start + 65536]))
    assert out == [stream[: -len(b"\r\nA1 OK done\r\n")], b"A1 OK done"]


def test_line_over_max_line_raises_before_the_line_ends() -> None:
    f = ResponseFramer(max_line=10, max_literal=100)
    f.feed(b"* 12345678")
    with pytest.raises(ProtocolError):
        f.feed(b"90")


def test_complete_line_over_max_line_raises() -> None:
    with pytest.raises(ProtocolError):
        ResponseFramer(max_line=10, max_literal=100).feed(b"* 123456789\r\n")


def test_line_of_exactly_max_line_is_accepted() -> None:
    f = ResponseFramer(max_line=10, max_literal=100)
    assert f.feed(b"* 12345678\r") == []
    assert f.feed(b"\n") == [b"* 12345678"]


def test_max_line_counts_each_line_of_a_response_separately() -> None:
    f = ResponseFramer(max_line=20, max_literal=100)
    response = b"* 1 FETCH (A {30}\r\n" + b"x" * 30 + b" B {2}\r\nyy)"
    assert f.feed(response + b"\r\n") == [response]


def test_literal_over_max_literal_raises() -> None:
    f = ResponseFramer(max_line=100, max_literal=1000)
    with pytest.raises(ProtocolError):
        f.feed(b"* 1 FETCH (BODY[] {1001}\r\n")


def test_literal8_over_max_literal_raises() -> None:
    with pytest.raises(ProtocolError):
        ResponseFramer(max_line=100, max_literal=5).feed(b"* 1 FETCH (BINARY[1] ~{6}\r\n")


def test_bare_lf_raises() -> None:
    with pytest.raises(ProtocolError):
        framer().feed(b"* 1 EXISTS\n")


def test_lf_right_after_literal_data_raises() -> None:
    with pytest.raises(ProtocolError):
        framer().feed(b"* 1 FETCH (BODY[] {1}\r\nx\n")


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError):
        ResponseFramer(max_line=0, max_literal=10)
