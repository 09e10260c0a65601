"""The envelope of a submission: the client's checked, or made from the header fields as
RFC 8621 7.5 says, and the SMTP envelope sent with only what the server advertises."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.jmap.errors import SetError
from gateway.mime.headers import parse_header_block
from gateway.smtp.extensions import Extensions
from gateway.translators.submission.envelope import (
    Address,
    SubmissionEnvelope,
    WireFacts,
    from_headers,
    invalid_recipients,
    parse_envelope,
    smtp_envelope,
    valid_mailbox,
    xtext,
)

POSTFIX = Extensions.parse(
    "mx.example.com\nPIPELINING\nSIZE 52428800\nVRFY\nETRN\nAUTH PLAIN LOGIN\n"
    "ENHANCEDSTATUSCODES\n8BITMIME\nDSN\nSMTPUTF8\nCHUNKING"
)
BARE = Extensions.parse("mx.example.com\nAUTH PLAIN")
FACTS = WireFacts(size=1234, eight_bit=False, utf8_header=False, envid="Sabc")


def headers(text: str) -> Any:
    return parse_header_block(text.encode())


def everyone(address: str) -> bool:
    return True


def test_mail_from_is_the_last_senders_address_before_from() -> None:
    made = from_headers(
        headers("From: Alice <alice@example.com>\nSender: Sec <sec@example.com>\nTo: b@x\n\n"),
        "id@example.com",
        everyone,
    )
    assert made.mail_from == Address("sec@example.com")


def test_mail_from_falls_back_to_from_then_to_the_identity() -> None:
    from_only = headers("From: Alice <alice@example.com>\nTo: b@x\n\n")
    assert from_headers(from_only, "id@x", everyone).mail_from.email == "alice@example.com"
    neither = headers("To: b@x\n\n")
    assert from_headers(neither, "id@x", everyone).mail_from.email == "id@x"


def test_an_address_the_identity_does_not_allow_becomes_the_identitys() -> None:
    # RFC 8621 7.5: "the email property from the Identity MUST be used instead".
    message = headers("From: Mallory <boss@example.com>\nTo: b@x\n\n")
    made = from_headers(message, "alice@example.com", lambda a: a == "alice@example.com")
    assert made.mail_from.email == "alice@example.com"


@pytest.mark.parametrize(
    "text",
    [
        "From: a@x, b@x\nTo: c@x\n\n",
        "From: a@x\nFrom: b@x\nTo: c@x\n\n",
        "Sender: a@x, b@x\nFrom: c@x\nTo: c@x\n\n",
    ],
)
def test_several_senders_are_an_invalid_email(text: str) -> None:
    with pytest.raises(SetError) as caught:
        from_headers(headers(text), "id@x", everyone)
    assert caught.value.type == "invalidEmail"


def test_rcpt_to_is_to_cc_and_bcc_deduplicated_without_parameters() -> None:
    made = from_headers(
        headers(
            "From: a@x\nTo: Bob <bob@example.com>, carol@example.com\n"
            "Cc: BOB@example.com, dave@example.com\nBcc: erin@example.com, carol@example.com\n"
            "Reply-To: not@example.com\n\n"
        ),
        "id@x",
        everyone,
    )
    assert made.rcpt_to == (
        Address("bob@example.com"),
        Address("carol@example.com"),
        Address("dave@example.com"),
        Address("erin@example.com"),
    )
    assert made.to_json()["rcptTo"][0] == {"email": "bob@example.com", "parameters": None}


def test_a_given_envelope_is_kept_as_given() -> None:
    given = {
        "mailFrom": {"email": "alice@example.com", "parameters": {"RET": "HDRS"}},
        "rcptTo": [{"email": "bob@example.com", "parameters": {"NOTIFY": "SUCCESS,FAILURE"}}],
    }
    envelope = parse_envelope(given)
    assert envelope.to_json() == given


@pytest.mark.parametrize(
    "given",
    [
        None,
        [],
        {"mailFrom": {"email": "a@x"}},
        {"mailFrom": {"email": "a@x"}, "rcptTo": {}},
        {"mailFrom": {"email": 1}, "rcptTo": []},
        {"mailFrom": {"email": "not an address"}, "rcptTo": []},
        {"mailFrom": {"email": "a@x", "parameters": {"B@D": None}}, "rcptTo": []},
        {"mailFrom": {"email": "a@x", "parameters": {"RET": "has space"}}, "rcptTo": []},
        {"mailFrom": {"email": "a@x", "extra": 1}, "rcptTo": []},
        {"mailFrom": {"email": "a@x"}, "rcptTo": [{"email": "b@x"}, {"email": "B@x"}]},
        {"mailFrom": {"email": "a@x"}, "rcptTo": [], "more": 1},
    ],
)
def test_a_bad_envelope_is_invalid_properties(given: Any) -> None:
    with pytest.raises(SetError) as caught:
        parse_envelope(given)
    assert caught.value.type == "invalidProperties"
    assert caught.value.extra == {"properties": ["envelope"]}


def test_the_null_sender_is_allowed() -> None:
    envelope = parse_envelope({"mailFrom": {"email": ""}, "rcptTo": [{"email": "b@x"}]})
    assert envelope.mail_from.email == ""


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        ("bob@example.com", True),
        ("bob+tag@example.com", True),
        ("jörg@bücher.example", True),
        ('"odd"@example.com', True),
        ("bob", False),
        ("@example.com", False),
        ("bob@", False),
        ("bob @example.com", False),
        ("<bob@example.com>", False),
        ("bob@example..com", False),
        ("b" * 250 + "@example.com", False),
    ],
)
def test_valid_mailbox(address: str, valid: bool) -> None:
    assert valid_mailbox(address) is valid


def test_invalid_recipients_are_listed() -> None:
    envelope = SubmissionEnvelope(
        Address("a@x"), (Address("b@x"), Address("nobody"), Address("c d@x"))
    )
    assert invalid_recipients(envelope) == ["nobody", "c d@x"]


def test_wire_envelope_carries_the_gateways_parameters_where_advertised() -> None:
    envelope = parse_envelope(
        {
            "mailFrom": {"email": "alice@example.com", "parameters": {"ret": "HDRS"}},
            "rcptTo": [
                {
                    "email": "bob@example.com",
                    "parameters": {"NOTIFY": "SUCCESS", "ORCPT": "rfc822;bob+x=y@example.com"},
                }
            ],
        }
    )
    facts = WireFacts(size=99, eight_bit=True, utf8_header=True, envid="S1+2")
    wire = smtp_envelope(envelope, POSTFIX, facts)
    assert wire.mail_from == "alice@example.com"
    assert dict(wire.parameters) == {
        "RET": "HDRS",
        "SIZE": "99",
        "BODY": "8BITMIME",
        "SMTPUTF8": None,
        "ENVID": "S1+2B2",
    }
    assert dict(wire.recipients[0].parameters) == {
        "NOTIFY": "SUCCESS",
        # RFC 3461 4.2: ORCPT's address is xtext ("+" and "=" as +HH).
        "ORCPT": "rfc822;bob+2Bx+3Dy@example.com",
    }


def test_a_plain_server_gets_no_parameters() -> None:
    envelope = parse_envelope({"mailFrom": {"email": "a@x"}, "rcptTo": [{"email": "b@x"}]})
    wire = smtp_envelope(envelope, BARE, FACTS)
    assert dict(wire.parameters) == {}
    assert dict(wire.recipients[0].parameters) == {}


@pytest.mark.parametrize(
    ("where", "parameters"),
    [
        ("mailFrom", {"RET": "FULL"}),
        ("rcptTo", {"NOTIFY": "NEVER"}),
        ("mailFrom", {"MT-PRIORITY": "3"}),
        ("mailFrom", {"BODY": "8BITMIME"}),
    ],
)
def test_a_parameter_the_server_does_not_support_is_refused_not_dropped(
    where: str, parameters: dict[str, str]
) -> None:
    given: dict[str, Any] = {"mailFrom": {"email": "a@x"}, "rcptTo": [{"email": "b@x"}]}
    if where == "mailFrom":
        given["mailFrom"]["parameters"] = parameters
    else:
        given["rcptTo"][0]["parameters"] = parameters
    with pytest.raises(SetError) as caught:
        smtp_envelope(parse_envelope(given), BARE, FACTS)
    assert caught.value.type == "invalidProperties"
    assert next(iter(parameters)) in (caught.value.description or "")


def test_hold_parameters_are_left_to_the_hold_part() -> None:
    given = {
        "mailFrom": {"email": "a@x", "parameters": {"HOLDFOR": "60"}},
        "rcptTo": [{"email": "b@x"}],
    }
    wire = smtp_envelope(parse_envelope(given), BARE, FACTS)
    assert "HOLDFOR" not in wire.parameters


def test_non_ascii_recipients_need_smtputf8() -> None:
    given = {"mailFrom": {"email": "a@x"}, "rcptTo": [{"email": "jörg@x"}, {"email": "b@x"}]}
    with pytest.raises(SetError) as caught:
        smtp_envelope(parse_envelope(given), BARE, FACTS)
    assert caught.value.type == "invalidRecipients"
    assert caught.value.extra == {"invalidRecipients": ["jörg@x"]}
    wire = smtp_envelope(parse_envelope(given), POSTFIX, FACTS)
    assert "SMTPUTF8" in wire.parameters


def test_xtext() -> None:
    # RFC 3461 4: "+" and "=" and octets outside 33-126 are "+" and two upper-case hex digits.
    assert xtext("a+b=c d") == "a+2Bb+3Dc+20d"
    assert xtext("é") == "+C3+A9"


def test_parameter_values_hold_no_equals_sign_but_xtext_ones() -> None:
    with pytest.raises(SetError):
        parse_envelope(
            {"mailFrom": {"email": "a@x", "parameters": {"MT-PRIORITY": "a=b"}}, "rcptTo": []}
        )
    given = {
        "mailFrom": {"email": "a@x", "parameters": None},
        "rcptTo": [{"email": "b@x", "parameters": {"ORCPT": "rfc822;b=c@x"}}],
    }
    wire = smtp_envelope(parse_envelope(given), POSTFIX, FACTS)
    assert wire.recipients[0].parameters["ORCPT"] == "rfc822;b+3Dc@x"


def test_at_most_twelve_client_parameters_leave_room_for_the_gateways() -> None:
    many = {f"X-{i}": None for i in range(13)}
    with pytest.raises(SetError):
        parse_envelope({"mailFrom": {"email": "a@x", "parameters": many}, "rcptTo": []})
