"""parse_response and the typed parsers, on Dovecot 2.3 / Cyrus 3.6 style responses."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.imap.errors import CommandFailed, ProtocolError
from gateway.imap.responses.bodystructure import TextSection, text_sections
from gateway.imap.responses.capabilities import parse_capabilities, parse_enabled
from gateway.imap.responses.codes import parse_appenduid, parse_copyuid
from gateway.imap.responses.fetch import fetch_key, fetches_by_uid, parse_fetch
from gateway.imap.responses.list import parse_list
from gateway.imap.responses.namespace import parse_namespace
from gateway.imap.responses.search import parse_esearch, parse_search
from gateway.imap.responses.select import fold_select
from gateway.imap.responses.status import parse_status
from gateway.imap.responses.tokens import (
    Continuation,
    ResponseCode,
    Tagged,
    Untagged,
    parse_response,
)
from gateway.imap.responses.vanished import parse_vanished
from gateway.imap.sequence import UidSet


def untagged(raw: bytes) -> Untagged:
    response = parse_response(raw)
    assert isinstance(response, Untagged)
    return response


def tagged(raw: bytes) -> Tagged:
    response = parse_response(raw)
    assert isinstance(response, Tagged)
    return response


# --- generic responses -------------------------------------------------------------------


def test_greeting_with_capability_code() -> None:
    response = untagged(
        b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
        b"AUTH=PLAIN AUTH=LOGIN] Dovecot ready."
    )
    assert response.keyword == "OK"
    assert response.status == "OK"
    assert response.is_status
    assert response.text == "Dovecot ready."
    assert response.code is not None
    assert parse_capabilities(response.code.args) == {
        "IMAP4REV1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "IDLE", "LITERAL+",
        "STARTTLS", "AUTH=PLAIN", "AUTH=LOGIN",
    }  # fmt: skip


def test_capability_response_from_cyrus() -> None:
    response = untagged(
        b"* CAPABILITY IMAP4rev1 LITERAL+ ID ENABLE ACL RIGHTS=kxten OBJECTID QRESYNC "
        b"X-QUOTA=STORAGE APPENDLIMIT=4294967295 LOGINDISABLED"
    )
    assert response.status is None
    assert parse_capabilities(response.values) == {
        "IMAP4REV1", "LITERAL+", "ID", "ENABLE", "ACL", "RIGHTS=KXTEN", "OBJECTID", "QRESYNC",
        "X-QUOTA=STORAGE", "APPENDLIMIT=4294967295", "LOGINDISABLED",
    }  # fmt: skip


def test_tagged_ok_with_code() -> None:
    assert tagged(b"A4 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).") == Tagged(
        "A4", "OK", ResponseCode("READ-WRITE"), "Select completed (0.001 + 0.000 secs)."
    )


def test_tagged_no_and_bad() -> None:
    assert tagged(b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.") == Tagged(
        "a1", "NO", ResponseCode("AUTHENTICATIONFAILED"), "Authentication failed."
    )
    assert tagged(b"G7 bad Error in IMAP command UID FETCH: Unknown parameter: EMAILID") == (
        Tagged("G7", "BAD", None, "Error in IMAP command UID FETCH: Unknown parameter: EMAILID")
    )


def test_tagged_without_text_and_code_without_text() -> None:
    assert tagged(b"A1 OK") == Tagged("A1", "OK", None, "")
    assert tagged(b"A1 OK [CLOSED]") == Tagged("A1", "OK", ResponseCode("CLOSED"), "")


def test_tagged_text_may_be_utf8() -> None:
    assert tagged("A1 NO Postfach nicht gefunden: Entwürfe".encode()).text == (
        "Postfach nicht gefunden: Entwürfe"
    )


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"A1 OK [APPENDUID 38505 3955] done", ResponseCode("APPENDUID", ["38505", "3955"])),
        (
            b"A1 OK [COPYUID 38505 304,319:320 3956:3958] Done",
            ResponseCode("COPYUID", ["38505", "304,319:320", "3956:3958"]),
        ),
        (b"* OK [HIGHESTMODSEQ 715194045007] x", ResponseCode("HIGHESTMODSEQ", ["715194045007"])),
        (
            b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited",
            ResponseCode("PERMANENTFLAGS", [["\\Deleted", "\\Seen", "\\*"]]),
        ),
        (b"* OK [NOMODSEQ] Sorry", ResponseCode("NOMODSEQ")),
        (b"A2 OK [MODIFIED 7,9] Conditional STORE failed", ResponseCode("MODIFIED", ["7,9"])),
        (b"A1 NO [ALREADYEXISTS] Mailbox exists", ResponseCode("ALREADYEXISTS")),
        (b"A1 NO [NONEXISTENT] Unknown Mailbox: Foo", ResponseCode("NONEXISTENT")),
        (b"* OK [uidvalidity 3857529045] UIDs valid", ResponseCode("UIDVALIDITY", ["3857529045"])),
        (
            b"* OK [MAILBOXID (F2212ea87-6097-4256-9d51-71338625)] Ok",
            ResponseCode("MAILBOXID", [["F2212ea87-6097-4256-9d51-71338625"]]),
        ),
        (
            b'* NO [BADCHARSET ("UTF-8" US-ASCII)] x',
            ResponseCode("BADCHARSET", [[b"UTF-8", "US-ASCII"]]),
        ),
        (
            b"* OK [REFERRAL imap://user;AUTH=*@SERVER2/] Try there",
            ResponseCode("REFERRAL", ["imap://user;AUTH=*@SERVER2/"]),
        ),
        # RFC 3501 9: a code may carry free text that does not tokenize; it is kept raw.
        (b'* OK [X-WEIRD "half quoted] text', ResponseCode("X-WEIRD", ['"half quoted'])),
    ],
)
def test_response_codes(raw: bytes, code: ResponseCode) -> None:
    response = parse_response(raw)
    assert isinstance(response, Tagged | Untagged)
    assert response.code == code


def test_continuations() -> None:
    assert parse_response(b"+ OK") == Continuation(None, "OK")
    assert parse_response(b"+ go ahead") == Continuation(None, "go ahead")
    assert parse_response(b"+") == Continuation(None, "")
    assert parse_response(b"+ ") == Continuation(None, "")
    assert parse_response(b"+ YWxpY2U=") == Continuation(None, "YWxpY2U=")


def test_numbered_data() -> None:
    assert untagged(b"* 23 EXISTS") == Untagged("EXISTS", 23)
    assert untagged(b"* 0 RECENT") == Untagged("RECENT", 0)
    assert untagged(b"* 44 EXPUNGE") == Untagged("EXPUNGE", 44)


def test_bye() -> None:
    assert untagged(b"* BYE Server shutting down.") == Untagged("BYE", text="Server shutting down.")


def test_quoted_strings_holding_protocol_characters() -> None:
    response = untagged(b'* LIST () "/" "a) * (b \\"c\\" \\\\d {5}"')
    assert response.values == [[], b"/", b'a) * (b "c" \\d {5}']


def test_quoted_string_with_star_space_in_fetch() -> None:
    response = untagged(b'* 5 FETCH (ENVELOPE (NIL "* OK fake (not a response)" NIL) UID 9)')
    assert response.values == [
        ["ENVELOPE", [None, b"* OK fake (not a response)", None], "UID", "9"]
    ]


def test_nil_atom_and_quoted_nil_differ() -> None:
    assert untagged(b'* ID ("name" NIL "x" "NIL" "y" nil)').values == [
        [b"name", None, b"x", b"NIL", b"y", None]
    ]


def test_literal_and_literal8_values() -> None:
    response = untagged(b"* 1 FETCH (BODY[] {7}\r\nab\r\n)cd BINARY[1] ~{3}\r\n\x00\x01\x02)")
    assert response.values == [["BODY[]", b"ab\r\n)cd", "BINARY[1]", b"\x00\x01\x02"]]


def test_empty_literal() -> None:
    assert untagged(b"* 1 FETCH (BODY[1] {0}\r\n)").values == [["BODY[1]", b""]]


def test_section_atoms_are_single_tokens() -> None:
    response = untagged(
        b"* 2 FETCH (BODY[HEADER.FIELDS (SUBJECT FROM)] {2}\r\nhi BINARY[1.2]<0> {1}\r\nx "
        b'BODY[]<0> NIL body[header.fields ("X-A" x-b)] NIL BINARY.SIZE[1] 123 BODY[1.MIME] NIL)'
    )
    assert response.values == [
        [
            "BODY[HEADER.FIELDS (SUBJECT FROM)]", b"hi",
            "BINARY[1.2]<0>", b"x",
            "BODY[]<0>", None,
            'body[header.fields ("X-A" x-b)]', None,
            "BINARY.SIZE[1]", "123",
            "BODY[1.MIME]", None,
        ]
    ]  # fmt: skip


def test_flags_are_atoms() -> None:
    assert untagged(b"* FLAGS (\\Answered \\Seen $Forwarded $label1 \\*)").values == [
        ["\\Answered", "\\Seen", "$Forwarded", "$label1", "\\*"]
    ]


def test_brackets_in_plain_atoms() -> None:
    assert untagged(b'* LIST () "/" [Gmail]/Sent').values == [[], b"/", "[Gmail]/Sent"]


def test_adjacent_lists_in_thread_and_bodystructure() -> None:
    assert untagged(b"* THREAD (2)(3 6 (4 23)(44 7 96))").values == [
        ["2"],
        ["3", "6", ["4", "23"], ["44", "7", "96"]],
    ]
    response = untagged(
        b'* 1 FETCH (BODYSTRUCTURE (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 1)'
        b'("text" "html" NIL NIL NIL "7bit" 9 1) "alternative"))'
    )
    assert response.values == [
        [
            "BODYSTRUCTURE",
            [
                [b"text", b"plain", [b"charset", b"us-ascii"], None, None, b"7bit", "5", "1"],
                [b"text", b"html", None, None, None, b"7bit", "9", "1"],
                b"alternative",
            ],
        ]
    ]


def test_trailing_space_at_end_is_tolerated() -> None:
    assert untagged(b"* SEARCH 1 2 ").values == ["1", "2"]
    assert untagged(b"* SEARCH").values == []


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"*",
        b"* ",
        b"* 12",
        b"* 12 ",
        b"A1",
        b"A1 MAYBE done",
        b"A+1 OK done",
        b"* 1 FETCH (UID 1",  # unterminated list
        b"* 1 FETCH (UID 1))",  # unbalanced
        b"* 1 FETCH (UID  1)",  # double space
        b"* 1 FETCH (UID 1 )",  # space before ")"
        b"* 1 FETCH (FLAGS (\\Seen)UID 1)",  # missing space after ")"
        b'* LIST () "/" "unterminated',
        b'* LIST () "/" "bad \\x escape"',
        b"* 1 FETCH (BODY[] {10}\r\nshort)",  # truncated literal
        b"* 1 FETCH (BODY[] {x}\r\n)",
        b"* 1 FETCH (BODY[] {3+}\r\nabc)",  # servers never send non-synchronizing literals
        b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT) NIL)",  # unterminated section
        b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT))] NIL)",
        b"* OK [UNTERMINATED code",
        b"* OK [ALERT]text without space",
        b"* \\Seen EXISTS",
        b"* 1 FETCH (\\ x)",
        b"* OK text with\r\nline break",
        b"* 1 FETCH (X \x80)",
        b"* 1 FETCH (X \x00)",
    ],
)
def test_malformed_responses_raise_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_response(raw)


# --- LIST --------------------------------------------------------------------------------


def test_list_dovecot_special_use() -> None:
    entry = parse_list(untagged(b'* LIST (\\HasNoChildren \\Drafts) "/" Drafts'))
    assert entry.attributes == {"\\HasNoChildren", "\\Drafts"}
    assert entry.delimiter == "/"
    assert entry.name == "Drafts"
    assert entry.raw_name == b"Drafts"
    assert entry.special_use == "\\Drafts"
    assert entry.selectable
    assert entry.extended == {}


def test_list_attributes_are_canonicalised_and_compared_case_insensitively() -> None:
    entry = parse_list(untagged(b'* LIST (\\hasnochildren \\SENT \\X-Custom) "." Sent'))
    assert entry.attributes == {"\\HasNoChildren", "\\Sent", "\\X-Custom"}
    assert entry.has_attribute("\\x-custom")
    assert entry.has_attribute("\\hasNoChildren")
    assert not entry.has_attribute("\\Trash")
    assert entry.special_use == "\\Sent"


def test_list_noselect_and_nonexistent() -> None:
    assert not parse_list(untagged(b'* LIST (\\Noselect \\HasChildren) "/" Lists')).selectable
    assert not parse_list(untagged(b'* LIST (\\NonExistent) "/" Gone')).selectable


def test_list_inbox_spelling_is_normalised_raw_kept() -> None:
    entry = parse_list(untagged(b'* LIST (\\HasNoChildren) "/" inbox'))
    assert (entry.name, entry.raw_name) == ("INBOX", b"inbox")


def test_list_nil_delimiter() -> None:
    entry = parse_list(untagged(b'* LIST (\\Noinferiors) NIL "Flat Box"'))
    assert entry.delimiter is None
    assert entry.name == "Flat Box"


def test_list_escaped_backslash_delimiter() -> None:
    entry = parse_list(untagged(b'* LIST () "\\\\" "Work\\\\Sub"'))
    assert (entry.delimiter, entry.name) == ("\\", "Work\\Sub")


def test_list_quoted_literal_and_nil_atom_names() -> None:
    assert parse_list(untagged(b'* LIST () "/" "Work &- Play"')).name == "Work & Play"
    entry = parse_list(untagged(b'* LIST () "/" {13}\r\nSpecial "box"'))
    assert (entry.name, entry.raw_name) == ('Special "box"', b'Special "box"')
    assert parse_list(untagged(b'* LIST () "/" NIL')).name == "NIL"


def test_list_modified_utf7_names() -> None:
    entry = parse_list(untagged(b'* LIST (\\HasNoChildren) "/" &BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-'))
    assert entry.name == "Отправленные"
    assert entry.raw_name == b"&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"
    entry = parse_list(untagged(b'* LIST () "/" "~peter/mail/&U,BTFw-/&ZeVnLIqe-"'))
    assert entry.name == "~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e"
    assert parse_list(untagged(b'* LIST () "/" "Tom &- Jerry"')).name == "Tom & Jerry"


def test_list_utf8_names_when_utf8_accept_is_enabled() -> None:
    raw = '* LIST () "/" "Отправленные &-"'.encode()
    assert parse_list(untagged(raw), utf8=True).name == "Отправленные &-"


def test_list_invalid_names_raise() -> None:
    with pytest.raises(ProtocolError):
        parse_list(untagged(b'* LIST () "/" &Jjo'))
    with pytest.raises(ProtocolError):
        parse_list(untagged('* LIST () "/" "Отправленные"'.encode()))  # 8-bit, no UTF8=ACCEPT
    with pytest.raises(ProtocolError):
        parse_list(untagged(b'* LIST () "/" "\xff"'), utf8=True)


def test_list_extended_data() -> None:
    entry = parse_list(
        untagged(b'* LIST (\\Subscribed) "/" "Foo" ("CHILDINFO" ("SUBSCRIBED") OLDNAME ("Bar"))')
    )
    assert entry.attributes == {"\\Subscribed"}
    assert entry.extended == {"CHILDINFO": [b"SUBSCRIBED"], "OLDNAME": [b"Bar"]}


def test_lsub_and_xlist_share_the_parser() -> None:
    assert parse_list(untagged(b'* LSUB () "." Sent')).name == "Sent"


@pytest.mark.parametrize(
    "raw",
    [
        b'* LIST "/" INBOX',
        b'* LIST (\\HasNoChildren) "//" INBOX',
        b"* LIST (\\HasNoChildren) / INBOX",
        b'* LIST ("\\\\Sent") "/" Sent',
        b'* LIST () "/" Foo ("CHILDINFO")',
        b'* LIST () "/" Foo (CHILDINFO ("SUBSCRIBED")) extra',
        b'* LIST () "/" ("Foo")',
        b"* STATUS INBOX (MESSAGES 1)",
    ],
)
def test_malformed_list_raises(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_list(untagged(raw))


# --- STATUS ------------------------------------------------------------------------------


def test_status_dovecot_with_x_guid() -> None:
    entry = parse_status(
        untagged(
            b"* STATUS INBOX (MESSAGES 300 UIDNEXT 301 UIDVALIDITY 1700000000 UNSEEN 2 "
            b"HIGHESTMODSEQ 715194045007 SIZE 65753602 X-GUID 0c2e9b2b6f7c5e65a6120000a6fb4d2e)"
        )
    )
    assert entry.name == "INBOX"
    assert entry.items == {
        "MESSAGES": 300,
        "UIDNEXT": 301,
        "UIDVALIDITY": 1700000000,
        "UNSEEN": 2,
        "HIGHESTMODSEQ": 715194045007,
        "SIZE": 65753602,
    }
    assert entry.text_items == {"X-GUID": "0c2e9b2b6f7c5e65a6120000a6fb4d2e"}
    assert entry.mailbox_id is None


def test_status_numeric_looking_guid_stays_text() -> None:
    entry = parse_status(untagged(b'* STATUS Sent (X-GUID "12345" MESSAGES 0)'))
    assert entry.text_items == {"X-GUID": "12345"}
    assert entry.items == {"MESSAGES": 0}


def test_status_cyrus_with_mailboxid() -> None:
    entry = parse_status(
        untagged(
            b'* STATUS "Lists/python-dev" (MESSAGES 1182 UIDVALIDITY 1732571234 '
            b"MAILBOXID (2dsox9sn2m9eborgn8f472x0) DELETED 0 recent 0 APPENDLIMIT NIL)"
        )
    )
    assert entry.name == "Lists/python-dev"
    assert entry.items == {"MESSAGES": 1182, "UIDVALIDITY": 1732571234, "DELETED": 0, "RECENT": 0}
    assert entry.mailbox_id == "2dsox9sn2m9eborgn8f472x0"


def test_status_rfc8474_example_and_mutf7_name() -> None:
    entry = parse_status(
        untagged(
            b"* STATUS &BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1- "
            b"(MAILBOXID (F2212ea87-6097-4256-9d51-71338625))"
        )
    )
    assert entry.name == "Отправленные"
    assert entry.mailbox_id == "F2212ea87-6097-4256-9d51-71338625"


@pytest.mark.parametrize(
    "raw",
    [
        b"* STATUS INBOX (MESSAGES)",
        b"* STATUS INBOX (MESSAGES x)",
        b"* STATUS INBOX (MESSAGES -1)",
        b"* STATUS INBOX MESSAGES 1",
        b"* STATUS INBOX (MAILBOXID (a b))",
        b"* STATUS (MESSAGES 1)",
    ],
)
def test_malformed_status_raises(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_status(untagged(raw))


# --- SELECT ------------------------------------------------------------------------------

SELECT_QRESYNC = [
    b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded $Junk)",
    b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded $Junk \\*)]"
    b" Flags permitted.",
    b"* 300 EXISTS",
    b"* 0 RECENT",
    b"* OK [UNSEEN 12] First unseen.",
    b"* OK [UIDVALIDITY 1700000000] UIDs valid",
    b"* OK [UIDNEXT 301] Predicted next UID",
    b"* VANISHED (EARLIER) 41,43:116",
    b"* VANISHED (EARLIER) 120",
    b"* 12 FETCH (UID 12 FLAGS ($Forwarded \\Seen) MODSEQ (715194045007))",
    b"* 20 FETCH (UID 25 FLAGS () MODSEQ (715194045001))",
    b"* OK [HIGHESTMODSEQ 715194045007] Highest",
]


def test_select_with_qresync() -> None:
    state = fold_select(
        [untagged(r) for r in SELECT_QRESYNC],
        tagged(b"A4 OK [READ-WRITE] Select completed (0.002 + 0.000 + 0.001 secs)."),
    )
    assert state.exists == 300
    assert state.recent == 0
    assert state.uidvalidity == 1700000000
    assert state.uidnext == 301
    assert state.first_unseen == 12
    assert state.highestmodseq == 715194045007
    assert state.flags == {
        "\\Answered",
        "\\Flagged",
        "\\Deleted",
        "\\Seen",
        "\\Draft",
        "$Forwarded",
        "$Junk",
    }
    assert state.permanent_flags == state.flags | {"\\*"}
    assert state.read_only is False
    assert state.mailbox_id is None
    assert state.vanished == UidSet.parse("41,43:116,120")
    assert [(f.seq, f.uid, f.flags, f.modseq) for f in state.fetches] == [
        (12, 12, ["$Forwarded", "\\Seen"], 715194045007),
        (20, 25, [], 715194045001),
    ]


def test_examine_on_cyrus_with_mailboxid_and_nomodseq() -> None:
    state = fold_select(
        [
            untagged(b"* 3 EXISTS"),
            untagged(b"* OK [UIDVALIDITY 1732571234] Ok"),
            untagged(b"* OK [MAILBOXID (2dsox9sn2m9eborgn8f472x0)] Ok"),
            untagged(b"* OK [NOMODSEQ] Sorry, modsequences have not been enabled"),
            untagged(b"* FLAGS (\\Seen)"),
        ],
        tagged(b"A5 OK [READ-ONLY] Completed"),
    )
    assert state.exists == 3
    assert state.uidnext is None
    assert state.highestmodseq is None
    assert state.read_only is True
    assert state.mailbox_id == "2dsox9sn2m9eborgn8f472x0"
    assert state.permanent_flags is None
    assert state.vanished == UidSet()
    assert state.fetches == ()


def test_select_drops_responses_before_closed() -> None:
    # RFC 7162 3.2.11: the first two belong to the mailbox that was selected before.
    responses = [
        untagged(b"* 10 EXISTS"),
        untagged(b"* OK [UIDVALIDITY 1] old"),
        untagged(b"* OK [CLOSED] Previous mailbox closed."),
        untagged(b"* 2 EXISTS"),
        untagged(b"* OK [UIDVALIDITY 2] new"),
    ]
    state = fold_select(responses, tagged(b"A6 OK [READ-WRITE] done"))
    assert (state.exists, state.uidvalidity) == (2, 2)


def test_select_failure_raises_command_failed() -> None:
    with pytest.raises(CommandFailed) as caught:
        fold_select([], tagged(b"A7 NO [NONEXISTENT] Mailbox doesn't exist: Foo"))
    assert (caught.value.status, caught.value.code) == ("NO", "NONEXISTENT")
    assert caught.value.text == "Mailbox doesn't exist: Foo"


@pytest.mark.parametrize(
    "responses",
    [
        [b"* OK [UIDVALIDITY 1] x"],
        [b"* 1 EXISTS"],
        [b"* 1 EXISTS", b"* OK [UIDVALIDITY] x"],
        [b"* 1 EXISTS", b"* OK [UIDVALIDITY x] x"],
        [b"* 1 EXISTS", b"* OK [UIDVALIDITY 1] x", b"* FLAGS \\Seen"],
        [b"* 1 EXISTS", b"* OK [UIDVALIDITY 1] x", b"* VANISHED (LATER) 1"],
        [b"* 1 EXISTS", b"* OK [UIDVALIDITY 1] x", b"* OK [MAILBOXID F1] x"],
    ],
)
def test_malformed_select_raises(responses: list[bytes]) -> None:
    with pytest.raises(ProtocolError):
        fold_select([untagged(r) for r in responses], tagged(b"A1 OK done"))


# --- FETCH -------------------------------------------------------------------------------


def test_fetch_dovecot_list_view_items() -> None:
    item = parse_fetch(
        untagged(
            b"* 7 FETCH (UID 4711 RFC822.SIZE 2345 FLAGS (\\Seen $Forwarded) INTERNALDATE "
            b'"17-Jul-1996 02:44:25 -0700" MODSEQ (12345) '
            b"X-GUID 1795627011.M71955P11355.vm,S=72,W=78 "
            b"BODY[HEADER.FIELDS (REFERENCES IN-REPLY-TO)] {22}\r\nIn-Reply-To: <a@b>\r\n\r\n"
            b' PREVIEW "Hello (world) * there")'
        )
    )
    assert item.seq == 7
    assert item.uid == 4711
    assert item.size == 2345
    assert item.flags == ["\\Seen", "$Forwarded"]
    assert item.internaldate == datetime(
        1996, 7, 17, 2, 44, 25, tzinfo=timezone(-timedelta(hours=7))
    )
    assert item.modseq == 12345
    assert item.x_guid == "1795627011.M71955P11355.vm,S=72,W=78"
    assert item.preview == "Hello (world) * there"
    assert item.section("BODY.PEEK[HEADER.FIELDS (REFERENCES IN-REPLY-TO)]") == (
        b"In-Reply-To: <a@b>\r\n\r\n"
    )
    assert item.email_id is None
    assert item.thread_id is None


def test_fetch_cyrus_object_ids() -> None:
    item = parse_fetch(
        untagged(
            b"* 1 FETCH (UID 1 EMAILID (Md02797950eeb4234ae179537) THREADID (T41d44e7405824926))"
        )
    )
    assert item.email_id == "Md02797950eeb4234ae179537"
    assert item.thread_id == "T41d44e7405824926"
    assert (
        parse_fetch(untagged(b"* 2 FETCH (UID 2 EMAILID (M6d99ac3275bb4e) THREADID NIL)")).thread_id
        is None
    )


def test_fetch_body_sections_case_and_partial() -> None:
    item = parse_fetch(
        untagged(
            b"* 3 FETCH (uid 9 body[] {5}\r\nhello BINARY[1]<0> ~{4}\r\n\x00\r\n\xff "
            b"body[header.fields (subject)] {14}\r\nSubject: x\r\n\r\n BODY[2] NIL)"
        )
    )
    assert item.uid == 9
    assert item.section("BODY.PEEK[]") == b"hello"
    assert item.section("body[]") == b"hello"
    assert item.section("BINARY.PEEK[1]<0.4>") == b"\x00\r\n\xff"
    assert item.section("BODY.PEEK[HEADER.FIELDS (SUBJECT)]") == b"Subject: x\r\n\r\n"
    assert item.section("BODY[2]") is None
    assert item.section("BODY[3]") is None
    assert "BODY.PEEK[]" in item
    assert "BODY[3]" not in item


def test_fetch_generic_structures_are_kept() -> None:
    item = parse_fetch(
        untagged(
            b'* 4 FETCH (ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg" '
            b'(("Terry Gray" NIL "gray" "cac.washington.edu")) NIL NIL NIL NIL NIL NIL '
            b'"<B27397-01@x>") '
            b'BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92))'
        )
    )
    envelope = item.get("envelope")
    assert isinstance(envelope, list)
    assert envelope[1] == b"IMAP4rev1 WG mtg"
    assert envelope[2] == [[b"Terry Gray", None, b"gray", b"cac.washington.edu"]]
    assert item.get("BODYSTRUCTURE") == [
        b"TEXT",
        b"PLAIN",
        [b"CHARSET", b"US-ASCII"],
        None,
        None,
        b"7BIT",
        "3028",
        "92",
    ]


def test_fetch_internaldate_with_space_padded_day() -> None:
    item = parse_fetch(untagged(b'* 1 FETCH (INTERNALDATE " 7-Feb-2025 23:59:59 +0530")'))
    assert item.internaldate == datetime(
        2025, 2, 7, 23, 59, 59, tzinfo=timezone(timedelta(hours=5, minutes=30))
    )


def test_fetch_preview_draft_form_and_nil() -> None:
    assert parse_fetch(untagged(b'* 1 FETCH (PREVIEW (FUZZY "Hi"))')).preview == "Hi"
    assert parse_fetch(untagged(b"* 1 FETCH (PREVIEW NIL)")).preview is None


def test_fetch_absent_items_are_none() -> None:
    item = parse_fetch(untagged(b"* 1 FETCH (FLAGS (\\Deleted))"))
    assert (item.uid, item.size, item.modseq, item.internaldate, item.x_guid) == (None,) * 5
    assert item.flags == ["\\Deleted"]


def test_fetch_key() -> None:
    assert (
        fetch_key("body.peek[header.fields (Subject)]<0.100>") == "BODY[HEADER.FIELDS (SUBJECT)]<0>"
    )
    assert fetch_key("BINARY.PEEK[1.2]") == "BINARY[1.2]"
    assert fetch_key("rfc822.size") == "RFC822.SIZE"


@pytest.mark.parametrize(
    ("raw", "attribute"),
    [
        (b"* 1 FETCH (UID x)", "uid"),
        (b"* 1 FETCH (MODSEQ 5)", "modseq"),
        (b"* 1 FETCH (MODSEQ (5 6))", "modseq"),
        (b"* 1 FETCH (FLAGS \\Seen)", "flags"),
        (b'* 1 FETCH (FLAGS ("\\\\Seen"))', "flags"),
        (b'* 1 FETCH (INTERNALDATE "17-Jul-1996 02:44:25")', "internaldate"),
        (b'* 1 FETCH (INTERNALDATE "31-Feb-1996 02:44:25 +0000")', "internaldate"),
        (b'* 1 FETCH (INTERNALDATE "17-Foo-1996 02:44:25 +0000")', "internaldate"),
        (b"* 1 FETCH (INTERNALDATE 17-Jul-1996)", "internaldate"),
        (b"* 1 FETCH (EMAILID M1)", "email_id"),
        (b"* 1 FETCH (THREADID ())", "thread_id"),
        (b"* 1 FETCH (PREVIEW 12)", "preview"),
        (b"* 1 FETCH (X-GUID ())", "x_guid"),
    ],
)
def test_malformed_fetch_items_raise(raw: bytes, attribute: str) -> None:
    item = parse_fetch(untagged(raw))
    with pytest.raises(ProtocolError):
        getattr(item, attribute)


def test_malformed_fetch_section_raises() -> None:
    with pytest.raises(ProtocolError):
        parse_fetch(untagged(b"* 1 FETCH (BODY[] (a))")).section("BODY[]")


@pytest.mark.parametrize(
    "raw",
    [
        b"* 1 FETCH (UID)",
        b"* 1 FETCH UID 1",
        b"* 0 FETCH (UID 1)",
        b"* FETCH (UID 1)",
        b'* 1 FETCH ("UID" 1)',
    ],
)
def test_malformed_fetch_raises(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_fetch(untagged(raw))


# --- SEARCH / ESEARCH / VANISHED -------------------------------------------------------


def test_search() -> None:
    assert parse_search(untagged(b"* SEARCH 2 84 882")).numbers == [2, 84, 882]
    assert parse_search(untagged(b"* SEARCH")).numbers == []
    result = parse_search(untagged(b"* SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)"))
    assert result.numbers == [2, 5, 6, 7, 11, 12, 18, 19, 20, 23]
    assert result.modseq == 917162500
    assert parse_search(untagged(b"* SORT 5 3 4")).numbers == [5, 3, 4]


@pytest.mark.parametrize(
    "raw",
    [
        b"* SEARCH 0",
        b"* SEARCH 1 x",
        b"* SEARCH 1 (MODSEQ)",
        b"* SEARCH 1 (FOO 2)",
        b'* SEARCH "1"',
    ],
)
def test_malformed_search_raises(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_search(untagged(raw))


def test_esearch_rfc4731_example() -> None:
    result = parse_esearch(untagged(b'* ESEARCH (TAG "A282") UID MIN 2 COUNT 3 ALL 2,10:11'))
    assert result.tag == "A282"
    assert result.uid is True
    assert (result.min, result.max, result.count, result.modseq) == (2, None, 3, None)
    assert result.all == UidSet.parse("2,10:11")
    assert list(result.all) == [2, 10, 11]
    assert result.extra == {}


def test_esearch_without_uid_and_with_modseq_and_extension() -> None:
    result = parse_esearch(
        untagged(b'* ESEARCH (TAG "a1") MIN 1 MAX 2000 MODSEQ 917162500 PARTIAL (1:10 1,3)')
    )
    assert result.uid is False
    assert (result.min, result.max, result.modseq) == (1, 2000, 917162500)
    assert result.all is None
    assert result.extra == {"PARTIAL": ["1:10", "1,3"]}


def test_esearch_empty_result() -> None:
    result = parse_esearch(untagged(b'* ESEARCH (TAG "A1") UID'))
    assert (result.tag, result.uid, result.count, result.all) == ("A1", True, None, None)
    assert parse_esearch(untagged(b"* ESEARCH")).tag is None


@pytest.mark.parametrize(
    "raw",
    [
        b'* ESEARCH (TAG "A1") UID MIN 0',
        b'* ESEARCH (TAG "A1") UID COUNT',
        b'* ESEARCH (TAG "A1") ALL 1:*',
        b'* ESEARCH (TAG "A1") ALL 1,,2',
        b'* ESEARCH (TEG "A1") COUNT 1',
        b"* ESEARCH (TAG) COUNT 1",
    ],
)
def test_malformed_esearch_raises(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_esearch(untagged(raw))


def test_vanished() -> None:
    earlier = parse_vanished(untagged(b"* VANISHED (EARLIER) 41,43:116"))
    assert earlier.earlier is True
    assert earlier.uids == UidSet.from_ranges([(41, 41), (43, 116)])
    assert len(earlier.uids) == 75
    live = parse_vanished(untagged(b"* VANISHED 405,407,410,425"))
    assert live.earlier is False
    assert list(live.uids) == [405, 407, 410, 425]


@pytest.mark.parametrize(
    "raw",
    [
        b"* VANISHED",
        b"* VANISHED (LATER) 1",
        b"* VANISHED 1:*",
        b"* VANISHED (EARLIER)",
        b"* VANISHED 1 2",
    ],
)
def test_malformed_vanished_raises(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_vanished(untagged(raw))


# --- ENABLED, NAMESPACE, UIDPLUS codes ------------------------------------------------------


def test_enabled() -> None:
    assert parse_enabled(untagged(b"* ENABLED CONDSTORE qresync")) == {"CONDSTORE", "QRESYNC"}
    assert parse_enabled(untagged(b"* ENABLED")) == frozenset()


def test_namespace_dovecot_and_cyrus() -> None:
    dovecot = parse_namespace(untagged(b'* NAMESPACE (("" "/")) NIL NIL'))
    assert [(n.prefix, n.delimiter) for n in dovecot.personal] == [("", "/")]
    assert dovecot.other_users == dovecot.shared == ()
    cyrus = parse_namespace(
        untagged(
            b'* NAMESPACE (("" "/")) (("Other Users/" "/")) (("Shared Folders/" "/" '
            b'"X-PARAM" ("x")))'
        )
    )
    assert [(n.prefix, n.delimiter) for n in cyrus.other_users] == [("Other Users/", "/")]
    assert [(n.prefix, n.delimiter) for n in cyrus.shared] == [("Shared Folders/", "/")]


def test_malformed_namespace_raises() -> None:
    with pytest.raises(ProtocolError):
        parse_namespace(untagged(b'* NAMESPACE (("" "/")) NIL'))
    with pytest.raises(ProtocolError):
        parse_namespace(untagged(b'* NAMESPACE ((x "/")) NIL NIL'))


def test_appenduid() -> None:
    code = tagged(b"A3 OK [APPENDUID 38505 3955] APPEND completed").code
    assert code is not None
    result = parse_appenduid(code)
    assert (result.uidvalidity, list(result.uids)) == (38505, [3955])
    code = tagged(b"A3 OK [APPENDUID 38505 3955:3957] MULTIAPPEND completed").code
    assert code is not None
    assert list(parse_appenduid(code).uids) == [3955, 3956, 3957]


def test_copyuid_pairs_follow_server_order() -> None:
    code = tagged(b"A4 OK [COPYUID 38505 304,319:320 3956:3958] Done").code
    assert code is not None
    result = parse_copyuid(code)
    assert result.uidvalidity == 38505
    assert list(result.pairs()) == [(304, 3956), (319, 3957), (320, 3958)]
    code = untagged(b"* OK [COPYUID 7 10,2 20:21] Moved").code
    assert code is not None
    assert list(parse_copyuid(code).pairs()) == [(10, 20), (2, 21)]


@pytest.mark.parametrize(
    "code",
    [
        ResponseCode("COPYUID", ["1", "1:3", "5:6"]),
        ResponseCode("COPYUID", ["1", "1:*", "5:6"]),
        ResponseCode("COPYUID", ["1", "1"]),
        ResponseCode("APPENDUID", ["1", "1"]),
    ],
)
def test_malformed_copyuid_raises(code: ResponseCode) -> None:
    with pytest.raises(ProtocolError):
        parse_copyuid(code)


def test_typed_parser_rejects_other_keyword() -> None:
    with pytest.raises(ProtocolError):
        parse_fetch(untagged(b"* 1 EXISTS"))
    with pytest.raises(ProtocolError):
        parse_capabilities([[b"x"]])


def test_fetches_by_uid_keeps_requested_items_over_later_flag_updates() -> None:
    responses = [
        parse_response(b"* 1 FETCH (UID 7 BODY[] {3}\r\nabc)"),
        parse_response(b"* 1 FETCH (UID 7 FLAGS (\\Seen) MODSEQ (12))"),
        parse_response(b"* 2 FETCH (FLAGS ())"),
    ]
    merged = fetches_by_uid([r for r in responses if isinstance(r, Untagged)])
    assert list(merged) == [7]
    assert merged[7].section("BODY.PEEK[]") == b"abc"
    assert merged[7].flags == ["\\Seen"]


def test_text_sections_skip_attachments_and_attached_messages() -> None:
    """BODYSTRUCTURE as Dovecot 2.3 answers it for a text body with an attached text file
    and an attached multipart/alternative message."""
    raw = (
        b'* 1 FETCH (BODYSTRUCTURE (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 30 0'
        b' NIL NIL NIL NIL)("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 25 0 NIL'
        b' ("attachment" ("filename" "a.txt")) NIL NIL)("message" "rfc822" NIL NIL NIL "7bit"'
        b' 444 (NIL "Inner" NIL NIL NIL NIL NIL NIL NIL NIL) (("text" "plain" NIL NIL NIL'
        b' "7bit" 17 0 NIL NIL NIL NIL)("text" "html" NIL NIL NIL "7bit" 25 0 NIL NIL NIL NIL)'
        b' "alternative" NIL NIL NIL NIL) 17 NIL NIL NIL NIL)("text" "html" ("CHARSET"'
        b' "iso-8859-1") NIL NIL "QUOTED-PRINTABLE" 90 3 NIL NIL NIL NIL) "mixed" NIL NIL NIL'
        b" NIL))"
    )
    response = parse_response(raw)
    assert isinstance(response, Untagged)
    sections = text_sections(parse_fetch(response).get("BODYSTRUCTURE"))
    assert sections == [
        TextSection("1", "plain", "us-ascii", "7bit", 30),
        TextSection("4", "html", "iso-8859-1", "quoted-printable", 90),
    ]
    single = parse_response(
        b'* 2 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN" NIL NIL NIL "BASE64" 8 1 NIL NIL NIL NIL))'
    )
    assert isinstance(single, Untagged)
    assert text_sections(parse_fetch(single).get("BODYSTRUCTURE")) == [
        TextSection("1", "plain", None, "base64", 8)
    ]
