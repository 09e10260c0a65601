"""classify() on unsolicited responses recorded from Dovecot 2.3 (NOTIFY, IDLE) and Cyrus 3.6
(IDLE), cut by the real framer from streams fed in odd-sized chunks; and the NOTIFY builders."""

from __future__ import annotations

import pytest

from gateway.imap.errors import ConnectionLost, ProtocolError
from gateway.imap.notify import (
    NOTIFY_EXTENSIONS,
    can_notify,
    enable_for_notify,
    notify_none,
    notify_set_personal,
)
from gateway.imap.responses.unsolicited import (
    KeepAlive,
    MailboxListed,
    MailboxStatus,
    Overflow,
    SelectedChanged,
    Signal,
    classify,
)
from tests.imap.test_framing import feed_in_chunks, random_sizes
from tests.imap.wire import wire

# (line as received, its signal). Dovecot's lines are from the harness README 1.4 and this
# branch's probes (/work/briefs/readme-idle.md); note Dovecot's UTF-8 literals for non-ASCII
# names although UTF8=ACCEPT was not enabled.
RECORDED: list[tuple[bytes, Signal | None]] = [
    (
        b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 1796610662 UNSEEN 1 HIGHESTMODSEQ 2)",
        MailboxStatus(
            "INBOX",
            {
                "MESSAGES": 1,
                "UIDNEXT": 2,
                "UIDVALIDITY": 1796610662,
                "UNSEEN": 1,
                "HIGHESTMODSEQ": 2,
            },
        ),
    ),
    (b"* STATUS Other (UNSEEN 0)", MailboxStatus("Other", {"UNSEEN": 0})),
    (
        b"* STATUS {9}\r\nEntw\xc3\xbcrfe (MESSAGES 1 HIGHESTMODSEQ 2)",
        MailboxStatus("Entwürfe", {"MESSAGES": 1, "HIGHESTMODSEQ": 2}),
    ),
    (b'* STATUS "Work/Q&AOQ-" (MESSAGES 3)', MailboxStatus("Work/Qä", {"MESSAGES": 3})),
    (b'* LIST () "/" New1', MailboxListed("New1", frozenset(), None)),
    (b'* LIST () "/" New2 ("OLDNAME" (New1))', MailboxListed("New2", frozenset(), "New1")),
    (
        b'* LIST () "/" {5}\r\n\xc3\x89t\xc3\xa9 ("OLDNAME" ({9}\r\nEntw\xc3\xbcrfe))',
        MailboxListed("Été", frozenset(), "Entwürfe"),
    ),
    (
        b'* LIST () "/" "&AMk-t&AOk-" ("OLDNAME" ("Entw&APw-rfe"))',
        MailboxListed("Été", frozenset(), "Entwürfe"),
    ),
    (
        b'* LIST (\\NonExistent) "/" New2',
        MailboxListed("New2", frozenset({"\\NonExistent"}), None),
    ),
    (
        b'* LIST (\\subscribed) "/" Other',
        MailboxListed("Other", frozenset({"\\Subscribed"}), None),
    ),
    (b"* 23 EXISTS", SelectedChanged("EXISTS")),
    (b"* 24 EXPUNGE", SelectedChanged("EXPUNGE")),
    (b"* VANISHED 40", SelectedChanged("VANISHED")),
    (b"* 24 FETCH (UID 35 FLAGS (\\Recent))", SelectedChanged("FETCH")),
    (b"* 1 FETCH (FLAGS (\\Recent \\Flagged) MODSEQ (28))", SelectedChanged("FETCH")),
    (b"* FLAGS (\\Answered \\Flagged $Label1)", SelectedChanged("FLAGS")),
    (b"* OK [NOTIFICATIONOVERFLOW] Too many changes", Overflow()),
    (b"* OK Still here", KeepAlive()),
    (b"* OK [HIGHESTMODSEQ 122] Highest", KeepAlive()),
    (b"* OK [PERMANENTFLAGS (\\Flagged $Label1 \\*)] Flags permitted.", KeepAlive()),
    (b"* 1 RECENT", None),
    # Dovecot's only way of saying NOTIFY lost events (src/imap/imap-notify.c):
    (b"* NO NOTIFY error, some events may have got lost", Overflow()),
    (b"* NO [ALERT] Mailbox is almost full", Overflow()),
    (b"* BAD Internal error", Overflow()),
    (b"* CAPABILITY IMAP4rev1 IDLE NOTIFY", None),
]


@pytest.mark.parametrize("sizes", ["whole", "bytes", "threes", "sevens", "random"])
def test_recorded_lines_through_the_framer(sizes: str) -> None:
    stream = b"".join(line + b"\r\n" for line, _ in RECORDED)
    chunking = {
        "whole": [],
        "bytes": [1] * len(stream),
        "threes": [3] * (len(stream) // 3),
        "sevens": [7] * (len(stream) // 7),
        "random": random_sizes(15, len(stream)),
    }[sizes]
    framed = feed_in_chunks(stream, chunking)
    assert [classify(raw) for raw in framed] == [signal for _, signal in RECORDED]


def test_utf8_accept_names() -> None:
    # RFC 6855 3: after ENABLE UTF8=ACCEPT names are UTF-8 even when quoted.
    raw = '* STATUS "Qä" (MESSAGES 1)'.encode()
    assert classify(raw, utf8=True) == MailboxStatus("Qä", {"MESSAGES": 1})


def test_bye_is_a_lost_connection() -> None:
    with pytest.raises(ConnectionLost, match="shutting down"):
        classify(b"* BYE Server shutting down.")


@pytest.mark.parametrize(
    "raw",
    [
        b"* STATUS INBOX MESSAGES 1",  # items not in a list
        b"* STATUS INBOX (MESSAGES one)",
        b'* LIST () "/" New2 ("OLDNAME" (A B))',  # OLDNAME holds one name
        b'* LIST () "/" New2 ("OLDNAME" A)',
        b'* LIST () "/" "bad&-&"',  # not modified UTF-7
        b"A1 OK done",  # not untagged
        b"+ idling",
    ],
)
def test_malformed_responses_raise_protocol_errors(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        classify(raw)


def test_notify_set_personal_is_the_form_dovecot_accepts() -> None:
    assert wire(notify_set_personal()) == (
        b"A1 NOTIFY SET (personal (MessageNew MessageExpunge FlagChange MailboxName"
        b" SubscriptionChange))\r\n"
    )
    assert wire(notify_set_personal(["MailboxName"])) == (
        b"A1 NOTIFY SET (personal (MailboxName))\r\n"
    )


@pytest.mark.parametrize(
    "events",
    [[], ["MessageNew"], ["MessageExpunge", "FlagChange"], ["Anything"], ["MailboxName)"]],
)
def test_notify_set_refuses_what_servers_refuse(events: list[str]) -> None:
    with pytest.raises(ValueError):
        notify_set_personal(events)


def test_notify_none() -> None:
    assert wire(notify_none()) == b"A1 NOTIFY NONE\r\n"


def test_enable_only_what_is_offered_and_not_enabled() -> None:
    assert NOTIFY_EXTENSIONS == ("CONDSTORE", "QRESYNC")
    both = frozenset({"IMAP4REV1", "CONDSTORE", "QRESYNC", "NOTIFY"})
    command = enable_for_notify(both, frozenset())
    assert command is not None and wire(command) == b"A1 ENABLE CONDSTORE QRESYNC\r\n"
    command = enable_for_notify(both, frozenset({"CONDSTORE"}))
    assert command is not None and wire(command) == b"A1 ENABLE QRESYNC\r\n"
    assert enable_for_notify(both, frozenset({"CONDSTORE", "QRESYNC"})) is None
    assert enable_for_notify(frozenset({"IMAP4REV1", "NOTIFY"}), frozenset()) is None


def test_can_notify_needs_notify_idle_and_condstore() -> None:
    dovecot = frozenset({"IMAP4REV1", "IDLE", "NOTIFY", "CONDSTORE", "QRESYNC"})
    cyrus = frozenset({"IMAP4REV1", "IDLE", "CONDSTORE", "QRESYNC", "LIST-STATUS"})
    assert can_notify(dovecot)
    assert not can_notify(cyrus)
    assert not can_notify(dovecot - {"CONDSTORE"})
    assert not can_notify(dovecot - {"IDLE"})
