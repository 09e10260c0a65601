"""UID SEARCH with typed criteria: the octets RFC 3501 6.4.4 and RFC 4731 call for."""

from __future__ import annotations

import pytest

from gateway.imap.search import (
    ALL,
    And,
    Criterion,
    Header,
    Larger,
    Not,
    Or,
    Smaller,
    Text,
    TextKey,
    Uid,
    arguments,
    uid_search,
)
from gateway.imap.sequence import from_uid
from tests.imap.wire import wire

FROM_BOB = Text(TextKey.FROM, "bob")
SUBJECT = Text(TextKey.SUBJECT, "next plans")
BODY = Text(TextKey.BODY, "x")


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ([], b"ALL"),
        ([ALL], b"ALL"),
        ([FROM_BOB], b"FROM bob"),
        ([FROM_BOB, SUBJECT], b'FROM bob SUBJECT "next plans"'),
        # RFC 3501 6.4.4: keys side by side are ANDed, however deeply the ANDs nest.
        ([And((FROM_BOB, And((SUBJECT,))))], b'FROM bob SUBJECT "next plans"'),
        ([And(())], b"ALL"),
        # OR takes two keys: more alternatives nest, from the right.
        ([Or((FROM_BOB, SUBJECT))], b'OR FROM bob SUBJECT "next plans"'),
        ([Or((FROM_BOB, SUBJECT, BODY))], b'OR FROM bob OR SUBJECT "next plans" BODY x'),
        ([Or((FROM_BOB,))], b"FROM bob"),
        ([Or(())], b"NOT ALL"),
        # Several keys as one operand: a parenthesized list.
        ([Or((And((FROM_BOB, SUBJECT)), BODY))], b'OR (FROM bob SUBJECT "next plans") BODY x'),
        ([Not(And((FROM_BOB, SUBJECT)))], b'NOT (FROM bob SUBJECT "next plans")'),
        ([Not(Or((FROM_BOB, BODY)))], b"NOT OR FROM bob BODY x"),
        ([Not(Or(()))], b"NOT NOT ALL"),
        ([Header("List-Id", "")], b'HEADER List-Id ""'),
        ([Header("Message-ID", "<a@b>")], b"HEADER Message-ID <a@b>"),
        ([Text(TextKey.TEXT, "NIL")], b'TEXT "NIL"'),
        ([Text(TextKey.TO, 'say "hi"')], b'TO "say \\"hi\\""'),
        (
            [Uid(from_uid(7)), Larger(99), Smaller(101)],
            b"UID 7:* LARGER 99 SMALLER 101",
        ),
        ([Uid([3, 4, 5, 9])], b"UID 3:5,9"),
    ],
)
def test_criteria_as_search_keys(criteria: list[Criterion], expected: bytes) -> None:
    assert wire(uid_search(criteria)) == b"A1 UID SEARCH " + expected + b"\r\n"


def test_text_that_cannot_be_quoted_goes_as_a_literal() -> None:
    command = uid_search([Text(TextKey.SUBJECT, "café")], charset="UTF-8")
    assert wire(command) == b"A1 UID SEARCH CHARSET UTF-8 SUBJECT {5}\r\n<sync>caf\xc3\xa9\r\n"
    assert wire(command, literal_plus=True) == (
        b"A1 UID SEARCH CHARSET UTF-8 SUBJECT {5+}\r\n<nonsync>caf\xc3\xa9\r\n"
    )


def test_esearch_asks_for_all_before_the_charset() -> None:
    """RFC 4731 3: UID SEARCH RETURN (ALL) [CHARSET ...] criteria."""
    command = uid_search([BODY], charset="UTF-8", esearch=True)
    assert wire(command) == b"A1 UID SEARCH RETURN (ALL) CHARSET UTF-8 BODY x\r\n"


def test_arguments_of_a_line_break_never_make_a_second_command() -> None:
    tokens = arguments([Text(TextKey.SUBJECT, "x\r\nA2 DELETE INBOX")])
    command = wire(uid_search([Text(TextKey.SUBJECT, "x\r\nA2 DELETE INBOX")]))
    assert len(tokens) == 2
    assert command.startswith(b"A1 UID SEARCH SUBJECT {18}\r\n<sync>x\r\nA2 DELETE INBOX")


def test_uid_takes_no_text_but_a_sequence_set() -> None:
    with pytest.raises(ValueError):
        uid_search([Uid("1 OR ALL")])
