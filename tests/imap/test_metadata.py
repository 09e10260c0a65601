"""GETMETADATA / SETMETADATA builders and the METADATA response parser (RFC 5464), on the
forms Dovecot 2.3 and Cyrus 3.6 answer (harness README 1.3): values as literals, quoted
strings or NIL, names in any case."""

from __future__ import annotations

import pytest

from gateway.imap.errors import ProtocolError
from gateway.imap.metadata import get_metadata, set_metadata
from gateway.imap.responses.metadata import long_entries, parse_metadata
from gateway.imap.responses.tokens import Tagged, Untagged, parse_response
from tests.imap.wire import wire

ROOT = "/private/vendor/jmap-gateway/identity"


def untagged(raw: bytes) -> Untagged:
    response = parse_response(raw)
    assert isinstance(response, Untagged)
    return response


def test_getmetadata_puts_its_options_before_the_mailbox() -> None:
    # RFC 5464 4.2: GETMETADATA [options] mailbox entries.
    assert wire(get_metadata([ROOT], depth="1", max_size=4096)) == (
        b'A1 GETMETADATA (MAXSIZE 4096 DEPTH 1) "" (' + ROOT.encode() + b")\r\n"
    )
    assert wire(get_metadata(["/private/a", "/shared/b"])) == (
        b'A1 GETMETADATA "" (/private/a /shared/b)\r\n'
    )


def test_setmetadata_sends_values_as_literals_and_nil_to_remove() -> None:
    command = set_metadata({f"{ROOT}/n1": b'{"name":"A"}', f"{ROOT}/n2": None})
    assert wire(command, literal_plus=True) == (
        b'A1 SETMETADATA "" ('
        + ROOT.encode()
        + b'/n1 {12+}\r\n<nonsync>{"name":"A"} '
        + ROOT.encode()
        + b"/n2 NIL)\r\n"
    )
    # Without LITERAL+ the server is asked first; an empty value is a literal too, never NIL.
    assert wire(set_metadata({"/private/x": b""})) == (
        b'A1 SETMETADATA "" (/private/x {0}\r\n<sync>)\r\n'
    )


@pytest.mark.parametrize(
    "name",
    [
        "/private",
        "/other/x",
        "/private/a*",
        "/private/a%",
        "/private//a",
        "/private/a/",
        "private/a",
        "/private/a b",
        '/private/"a',
    ],
)
def test_entry_names_the_gateway_never_writes_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        set_metadata({name: b"x"})
    with pytest.raises(ValueError):
        get_metadata([name])


def test_builders_refuse_empty_requests_and_unknown_depths() -> None:
    with pytest.raises(ValueError):
        set_metadata({})
    with pytest.raises(ValueError):
        get_metadata([])
    with pytest.raises(ValueError):
        get_metadata([ROOT], depth="2")


def test_literal_values_as_dovecot_sends_them_with_lowercased_names() -> None:
    raw = (
        b'* METADATA "" (/private/vendor/jmap-gateway/identity/NABC {5}\r\nhello '
        b"/private/vendor/jmap-gateway/identity/ndef {0}\r\n)"
    )
    parsed = parse_metadata(untagged(raw))
    assert parsed.mailbox == b""
    assert parsed.values == {f"{ROOT}/nabc": b"hello", f"{ROOT}/ndef": b""}


def test_quoted_and_nil_values_as_cyrus_sends_them() -> None:
    raw = b'* METADATA "" (/private/a "say \\"hi\\"" /private/missing NIL)'
    assert parse_metadata(untagged(raw)).values == {
        "/private/a": b'say "hi"',
        "/private/missing": None,
    }


def test_a_value_holding_protocol_syntax_stays_one_value() -> None:
    value = b'{"a":") NIL (\r\n* BYE"}'
    raw = b"* METADATA INBOX (/private/x {%d}\r\n%s)" % (len(value), value)
    parsed = parse_metadata(untagged(raw))
    assert parsed.mailbox == b"INBOX"
    assert parsed.values == {"/private/x": value}


def test_unsolicited_form_names_changed_entries() -> None:
    # RFC 5464 4.4.2: the entries that changed, without values.
    parsed = parse_metadata(untagged(b'* METADATA "" /private/A /shared/b'))
    assert parsed.values == {}
    assert parsed.changed == ("/private/a", "/shared/b")


@pytest.mark.parametrize(
    "raw",
    [
        b"* METADATA",
        b'* METADATA "" (/private/a)',
        b'* METADATA "" (/private/a (x))',
        b'* METADATA "" (NIL "x")',
        b'* LIST () "/" INBOX',
    ],
)
def test_malformed_responses_raise_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_metadata(untagged(raw))


def test_long_entries_code() -> None:
    tagged = parse_response(b"A1 OK [METADATA LONGENTRIES 11] Getmetadata completed")
    assert isinstance(tagged, Tagged)
    assert long_entries(tagged.code) == 11
    plain = parse_response(b"A1 OK Getmetadata completed")
    assert isinstance(plain, Tagged)
    assert long_entries(plain.code) == 0
    bad = parse_response(b"A1 OK [METADATA LONGENTRIES many] x")
    assert isinstance(bad, Tagged)
    with pytest.raises(ProtocolError):
        long_entries(bad.code)
