"""Commands that change messages: APPEND, UID STORE, UID COPY / MOVE, UID EXPUNGE.

RFC 3501 6.3.11, 6.4.6, 6.4.7 and 6.4.8; RFC 4315 (UIDPLUS) for UID EXPUNGE, RFC 6851 for
MOVE, RFC 7162 3.1.3 for UNCHANGEDSINCE, and the UID FETCH CHANGEDSINCE that checks what a
STORE left behind (RFC 7162 3.1.4.1, 3.2.6). Each returns a :class:`Command` for the caller's
connection to run; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from gateway.imap.commands import (
    Command,
    Uids,
    date_time,
    flag_list,
    literal,
    mailbox,
    sequence_set,
)

DELETED = "\\Deleted"


def append(
    name: str,
    message: bytes,
    *,
    flags: Iterable[str],
    received_at: datetime | None,
    utf8: bool,
) -> Command:
    """``APPEND mailbox (flags) ["date-time"] {literal}``; the message always as a literal."""
    date = (date_time(received_at),) if received_at else ()
    return Command("APPEND", mailbox(name, utf8=utf8), flag_list(flags), *date, literal(message))


def uid_store(
    uids: Uids,
    flags: Iterable[str],
    *,
    mode: Literal["+", "-", ""],
    silent: bool = False,
    unchanged_since: int | None = None,
) -> Command:
    """``UID STORE uids [(UNCHANGEDSINCE n)] [+-]FLAGS[.SILENT] (flags)``: ``mode`` "+" adds,
    "-" removes, "" replaces."""
    guard = (f"(UNCHANGEDSINCE {int(unchanged_since)})",) if unchanged_since is not None else ()
    item = f"{mode}FLAGS{'.SILENT' if silent else ''}"
    return Command("UID", "STORE", sequence_set(uids), *guard, item, flag_list(flags))


def uid_expunge(uids: Uids) -> Command:
    """``UID EXPUNGE uids`` (RFC 4315 2.1): only these, whatever else is \\Deleted."""
    return Command("UID", "EXPUNGE", sequence_set(uids))


def remove(uids: Uids) -> tuple[Command, Command]:
    """Flag exactly ``uids`` \\Deleted and expunge exactly them: two commands to pipeline."""
    chunk = sequence_set(uids)
    return uid_store(chunk, [DELETED], mode="+", silent=True), uid_expunge(chunk)


def uid_copy(uids: Uids, destination: str, *, utf8: bool, move: bool = False) -> Command:
    """``UID COPY uids mailbox``, or ``UID MOVE`` (RFC 6851) with ``move``."""
    verb = "MOVE" if move else "COPY"
    return Command("UID", verb, sequence_set(uids), mailbox(destination, utf8=utf8))


def uid_changed_since(uids: Uids, modseq: int) -> Command:
    """``UID FETCH uids (UID) (CHANGEDSINCE n VANISHED)``: every message of ``uids`` whose
    mod-sequence is above ``n`` (answered with its MODSEQ, RFC 7162 3.1.4.1) and every UID of
    ``uids`` expunged since (VANISHED (EARLIER), RFC 7162 3.2.6; QRESYNC must be enabled).
    ``uids`` may be a sequence-set string ending in ``n:*``."""
    return Command(
        "UID", "FETCH", sequence_set(uids), "(UID)", f"(CHANGEDSINCE {int(modseq)} VANISHED)"
    )
