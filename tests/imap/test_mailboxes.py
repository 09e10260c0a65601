"""SELECT, STATUS, LIST, CREATE, RENAME, DELETE, SUBSCRIBE: the octets of each builder."""

from __future__ import annotations

import pytest

from gateway.imap.mailboxes import (
    ListReturn,
    StatusItem,
    create,
    delete,
    list_every,
    lsub_every,
    rename,
    select,
    status,
    subscribe,
)
from tests.imap.wire import wire


def test_select_and_examine() -> None:
    assert wire(select("INBOX", utf8=False, read_only=False, qresync=None)) == (
        b"A1 SELECT INBOX\r\n"
    )
    assert wire(select("Sent", utf8=False, read_only=True, qresync=(1700000000, 42))) == (
        b"A1 EXAMINE Sent (QRESYNC (1700000000 42))\r\n"
    )


def test_status() -> None:
    items = [StatusItem.MESSAGES, StatusItem.UIDNEXT, StatusItem.HIGHESTMODSEQ]
    assert wire(status("Notes", items, utf8=False)) == (
        b"A1 STATUS Notes (MESSAGES UIDNEXT HIGHESTMODSEQ)\r\n"
    )
    assert wire(status("INBOX", [StatusItem.X_GUID], utf8=False)) == (
        b"A1 STATUS INBOX (X-GUID)\r\n"
    )


def test_list() -> None:
    assert wire(list_every()) == b'A1 LIST "" "*"\r\n'
    assert wire(lsub_every()) == b'A1 LSUB "" "*"\r\n'
    assert wire(list_every(status=[StatusItem.MAILBOXID])) == (
        b'A1 LIST "" "*" RETURN (STATUS (MAILBOXID))\r\n'
    )
    returns = [ListReturn.SUBSCRIBED, ListReturn.SPECIAL_USE, ListReturn.MYRIGHTS]
    assert wire(list_every(returns, [StatusItem.MESSAGES, StatusItem.UNSEEN])) == (
        b'A1 LIST "" "*" RETURN (SUBSCRIBED SPECIAL-USE MYRIGHTS STATUS (MESSAGES UNSEEN))\r\n'
    )
    assert wire(list_every([ListReturn.SUBSCRIBED])) == b'A1 LIST "" "*" RETURN (SUBSCRIBED)\r\n'


def test_create_with_and_without_a_special_use() -> None:
    assert wire(create("Work/Plans", utf8=False)) == b"A1 CREATE Work/Plans\r\n"
    assert wire(create("Junk mail", utf8=False, special_use="\\Junk")) == (
        b'A1 CREATE "Junk mail" (USE (\\Junk))\r\n'
    )
    with pytest.raises(ValueError):
        create("x", utf8=False, special_use="\\Junk) (USE")


def test_rename_delete_subscribe() -> None:
    assert wire(rename("Old", "Über", utf8=False)) == b"A1 RENAME Old &ANw-ber\r\n"
    assert wire(delete("Old", utf8=False)) == b"A1 DELETE Old\r\n"
    assert wire(subscribe("Old", utf8=False)) == b"A1 SUBSCRIBE Old\r\n"
    assert wire(subscribe("Old", utf8=False, subscribed=False)) == b"A1 UNSUBSCRIBE Old\r\n"
