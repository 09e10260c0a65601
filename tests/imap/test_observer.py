"""What connections report to an observer: bounded names only, never arguments."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from gateway.imap.commands import Command
from gateway.imap.errors import CommandFailed, CommandTimeout, ConnectionLost, ProtocolError
from gateway.imap.observer import (
    OTHER,
    PIPELINE,
    completion,
    connect_failure,
    failure,
    round_trip_name,
    verb,
)


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (Command("SELECT", "INBOX"), "SELECT"),
        (Command("UID", "FETCH", "1:*", "(FLAGS)"), "UID FETCH"),
        (Command("uid", "store", "4", "+FLAGS", "(\\Seen)"), "UID STORE"),
        (Command("UID", "THREAD"), OTHER),  # a verb outside the table
        (Command("XSECRET", "alice"), OTHER),
    ],
)
def test_verbs_are_names_from_the_table(command: Command, name: str) -> None:
    assert verb(command) == name


def test_several_commands_sent_together_are_one_pipeline() -> None:
    select, fetch = Command("SELECT", "INBOX"), Command("UID", "FETCH", "1", "(UID)")
    assert round_trip_name([fetch]) == "UID FETCH"
    assert round_trip_name([select, fetch]) == PIPELINE


def test_outcomes_are_a_closed_set() -> None:
    assert [completion(s) for s in ("OK", "NO", "BAD", "BYE")] == [
        "ok",
        "no",
        "bad",
        "protocol_error",
    ]
    assert failure(CommandFailed("NO", None, "Mailbox Private-Name is full")) == "no"
    assert failure(CommandTimeout("x")) == "timeout"
    assert failure(ConnectionLost("x")) == "connection_lost"
    assert failure(ProtocolError("x")) == "protocol_error"
    assert failure(asyncio.CancelledError()) == "cancelled"
    assert connect_failure(TimeoutError()) == "timeout"
    assert connect_failure(ssl.SSLError()) == "tls"
    assert connect_failure(ConnectionRefusedError()) == "unreachable"
