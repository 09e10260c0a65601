"""Command building: argument quoting, literals and LITERAL+/-, dates, redaction, login."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from gateway.imap.commands import (
    Command,
    Group,
    Literal,
    LiteralArg,
    Secret,
    astring,
    authenticate_command,
    authenticate_plain_command,
    date_time,
    flag_list,
    id_command,
    literal,
    login_command,
    mailbox,
    search_date,
    uid_set,
)
from gateway.imap.sequence import UidSet
from gateway.sasl import (
    oauthbearer_initial_response,
    plain_initial_response,
    xoauth2_initial_response,
)
from tests.imap.wire import wire


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("INBOX", "INBOX"),
        ("alice", "alice"),
        ("alice@example.com", "alice@example.com"),
        ("Lists/python-dev", "Lists/python-dev"),
        ("&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
        ("[Gmail]", "[Gmail]"),
        ("", '""'),
        ("NIL", '"NIL"'),
        ("nil", '"nil"'),
        ("two words", '"two words"'),
        ("*", '"*"'),
        ("50%", '"50%"'),
        ("(paren)", '"(paren)"'),
        ("{5}", '"{5}"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        (b"bytes", "bytes"),
    ],
)
def test_astring_atom_or_quoted(value: str | bytes, expected: str) -> None:
    assert astring(value) == expected


@pytest.mark.parametrize(
    ("value", "data"),
    [
        ("pässword", "pässword".encode()),
        ("line\r\nbreak", b"line\r\nbreak"),
        ("nul\0", b"nul\0"),
        ("tab\t", b"tab\t"),
        (b"\xff", b"\xff"),
    ],
)
def test_astring_falls_back_to_literal(value: str | bytes, data: bytes) -> None:
    assert astring(value) == LiteralArg(data)


def test_mailbox_encoding() -> None:
    assert mailbox("inbox") == "INBOX"
    assert mailbox("InBox") == "INBOX"
    assert mailbox("INBOX/Sub") == "INBOX/Sub"
    assert mailbox("Отправленные") == "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"
    assert mailbox("Work & Play") == '"Work &- Play"'
    assert mailbox("Отправленные", utf8=True) == LiteralArg("Отправленные".encode())
    assert mailbox("Sent", utf8=True) == "Sent"


def test_flag_list() -> None:
    assert flag_list(["\\Seen", "$Forwarded", "work"]) == "(\\Seen $Forwarded work)"
    assert flag_list([]) == "()"
    for bad in ["two words", "\\", "", "a]b", "(x", "\\*", 'q"', "ü"]:
        with pytest.raises(ValueError):
            flag_list([bad])


def test_uid_set() -> None:
    assert uid_set([5, 1, 2, 3]) == "1:3,5"
    assert uid_set(UidSet.parse("7:9")) == "7:9"
    with pytest.raises(ValueError):
        uid_set([])


def test_search_date() -> None:
    assert search_date(date(1994, 2, 1)) == "1-Feb-1994"
    assert search_date(date(2025, 12, 31)) == "31-Dec-2025"


def test_date_time() -> None:
    pdt = timezone(-timedelta(hours=7))
    assert date_time(datetime(1996, 7, 17, 2, 44, 25, tzinfo=pdt)) == '"17-Jul-1996 02:44:25 -0700"'
    assert date_time(datetime(2025, 3, 5, 23, 0, 9, tzinfo=UTC)) == '"05-Mar-2025 23:00:09 +0000"'
    ist = timezone(timedelta(hours=5, minutes=30))
    assert date_time(datetime(2024, 1, 1, 0, 0, 0, tzinfo=ist)) == '"01-Jan-2024 00:00:00 +0530"'
    odd = timezone(timedelta(minutes=10, seconds=30))
    assert date_time(datetime(2024, 1, 1, 0, 10, 30, tzinfo=odd)) == '"01-Jan-2024 00:00:00 +0000"'
    with pytest.raises(ValueError):
        date_time(datetime(2024, 1, 1))


def test_simple_command() -> None:
    command = Command(
        "uid fetch", uid_set([1, 2, 3]), "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
    )
    assert command.name == "UID FETCH"
    assert command.to_wire("A1") == [
        b"A1 UID FETCH 1:3 (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n"
    ]
    assert Command("NOOP").to_wire("G12") == [b"G12 NOOP\r\n"]


def test_synchronizing_literal_splits_the_command() -> None:
    command = Command("APPEND", mailbox("Sent"), flag_list(["\\Seen"]), literal(b"Hi\r\n"))
    assert command.to_wire("A1") == [
        b"A1 APPEND Sent (\\Seen) {4}\r\n",
        Literal(b"Hi\r\n", synchronizing=True),
        b"\r\n",
    ]


def test_literal_plus_makes_every_literal_non_synchronizing() -> None:
    big = b"x" * 5000
    command = Command("APPEND", "Sent", literal(big))
    assert command.to_wire("A1", literal_plus=True) == [
        b"A1 APPEND Sent {5000+}\r\n",
        Literal(big, synchronizing=False),
        b"\r\n",
    ]


def test_literal_minus_only_for_small_literals() -> None:
    # RFC 7888 4: LITERAL- allows non-synchronizing literals of at most 4096 octets.
    small, big = b"s" * 4096, b"b" * 4097
    command = Command("APPEND", "Sent", literal(small))
    assert (
        wire(command, literal_minus=True)
        == b"A1 APPEND Sent {4096+}\r\n<nonsync>" + small + b"\r\n"
    )
    command = Command("APPEND", "Sent", literal(big))
    assert wire(command, literal_minus=True) == b"A1 APPEND Sent {4097}\r\n<sync>" + big + b"\r\n"


def test_literal8_and_group() -> None:
    # RFC 6855 4 / RFC 3516: APPEND ... UTF8 (~{N}...) for 8-bit message data.
    command = Command("APPEND", "Drafts", "UTF8", Group(literal(b"\x00\xff", binary=True)))
    assert wire(command) == b"A1 APPEND Drafts UTF8 (~{2}\r\n<sync>\x00\xff)\r\n"
    assert (
        wire(command, literal_plus=True)
        == b"A1 APPEND Drafts UTF8 (~{2+}\r\n<nonsync>\x00\xff)\r\n"
    )


def test_group_with_literal_in_search() -> None:
    command = Command(
        "UID SEARCH",
        "CHARSET",
        "UTF-8",
        Group("HEADER", "Subject", astring("Grüße")),
        "NOT",
        "DELETED",
    )
    assert wire(command, literal_plus=True) == (
        b"A1 UID SEARCH CHARSET UTF-8 (HEADER Subject {7+}\r\n"
        b"<nonsync>Gr\xc3\xbc\xc3\x9fe) NOT DELETED\r\n"
    )
    assert command.redacted("A1") == "A1 UID SEARCH CHARSET UTF-8 (HEADER Subject {7}) NOT DELETED"


def test_multiple_literals() -> None:
    command = Command("LOGIN", astring("jürgen"), astring("päss"))
    assert command.to_wire("A1") == [
        b"A1 LOGIN {7}\r\n",
        Literal("jürgen".encode(), synchronizing=True),
        b" {5}\r\n",
        Literal("päss".encode(), synchronizing=True),
        b"\r\n",
    ]


def test_login_command_wire_and_log() -> None:
    command = login_command("alice", "pass word")
    assert command.to_wire("A1") == [b'A1 LOGIN alice "pass word"\r\n']
    assert command.redacted("A1") == "A1 LOGIN alice ***"
    assert "pass" not in repr(command)
    literal_password = login_command("alice", "sécret\r\n")
    assert literal_password.redacted() == "LOGIN alice ***"
    assert "sécret" not in repr(literal_password.args)


def test_secret_in_group_and_reprs() -> None:
    command = Command("ID", Group('"name"', Secret('"hidden"')))
    assert command.redacted() == 'ID ("name" ***)'
    assert repr(Secret("x")) == "Secret(***)"
    assert repr(literal(b"abc")) == "LiteralArg(<3 octets>, binary=False)"
    assert repr(Literal(b"abc", synchronizing=False)) == "Literal(<3 octets>, synchronizing=False)"
    assert repr(Group("A", literal(b"xy"))) == "Group((A {2}))"


def test_plain_initial_response() -> None:
    # RFC 4616 4 example: authcid "tim", password "tanstaaftanstaaf", no authzid.
    assert plain_initial_response("tim", "tanstaaftanstaaf") == "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
    encoded = plain_initial_response("jürgen", "pä ss")
    assert base64.b64decode(encoded) == "\0jürgen\0pä ss".encode()
    with pytest.raises(ValueError):
        plain_initial_response("a\0b", "x")


def test_authenticate_plain_command() -> None:
    command = authenticate_plain_command("tim", "tanstaaftanstaaf")
    assert command.to_wire("A1") == [b"A1 AUTHENTICATE PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n"]
    assert command.redacted("A1") == "A1 AUTHENTICATE PLAIN ***"


def test_id_command() -> None:
    # RFC 2971 3.1: fields and values are strings (quoted), NIL for none.
    command = id_command({"x-originating-ip": "2001:db8::7", "x-originating-port": "4711"})
    assert command.to_wire("A1") == [
        b'A1 ID ("x-originating-ip" "2001:db8::7" "x-originating-port" "4711")\r\n'
    ]
    assert id_command({}).to_wire("A1") == [b"A1 ID NIL\r\n"]
    for bad in ({"x": 'a"b'}, {"x": "a\\b"}, {"x" * 31: "v"}, {"x": "v" * 1025}, {"x": "ü"}):
        with pytest.raises(ValueError):
            id_command(bad)


# RFC 7628 4.1's token.
TOKEN = "vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg=="


def test_oauthbearer_initial_response() -> None:
    # RFC 7628 3.1: gs2-header "n,a=<authzid>," then kvpairs ending in two ^A.
    decoded = base64.b64decode(oauthbearer_initial_response("user@example.com", TOKEN))
    assert decoded == b"n,a=user@example.com,\x01auth=Bearer " + TOKEN.encode() + b"\x01\x01"
    # RFC 5801 5.1: "," and "=" in the authzid are escaped as =2C and =3D.
    escaped = base64.b64decode(oauthbearer_initial_response("a,b=c", TOKEN))
    assert escaped.startswith(b"n,a=a=2Cb=3Dc,\x01")
    # No authorization identity: the server takes the user from the token.
    assert base64.b64decode(oauthbearer_initial_response(None, TOKEN)).startswith(b"n,,\x01")
    for user, token in (("a\x01b", TOKEN), ("a", "bad token"), ("a", "x\x01auth=y")):
        with pytest.raises(ValueError):
            oauthbearer_initial_response(user, token)


def test_xoauth2_initial_response_and_command() -> None:
    decoded = base64.b64decode(xoauth2_initial_response("someuser@example.com", TOKEN))
    assert decoded == b"user=someuser@example.com\x01auth=Bearer " + TOKEN.encode() + b"\x01\x01"
    with pytest.raises(ValueError):
        xoauth2_initial_response("a\x01b", TOKEN)
    command = authenticate_command("XOAUTH2", "dXNlcj0=")
    assert command.to_wire("A1") == [b"A1 AUTHENTICATE XOAUTH2 dXNlcj0=\r\n"]
    assert command.redacted("A1") == "A1 AUTHENTICATE XOAUTH2 ***"


@pytest.mark.parametrize("arg", ["", "a\r\nA2 DELETE INBOX", "x\ny", "nul\0", "ünï"])
def test_protocol_text_cannot_inject(arg: str) -> None:
    with pytest.raises(ValueError):
        Command("SELECT", arg)
    with pytest.raises(ValueError):
        Command("SELECT", Group(Secret(arg)))


@pytest.mark.parametrize("name", ["", "UID  FETCH", "FETCH\r\n", "1FETCH", " NOOP"])
def test_invalid_command_names(name: str) -> None:
    with pytest.raises(ValueError):
        Command(name)


@pytest.mark.parametrize("tag", ["", "A 1", "A+1", "*", "A(1", "A1\r\n"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(ValueError):
        Command("NOOP").to_wire(tag)
