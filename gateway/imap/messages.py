"""Commands that change messages: APPEND, UID STORE, UID COPY / MOVE, UID EXPUNGE.

RFC 3501 6.3.11, 6.4.6, 6.4.7 and 6.4.8; RFC 4315 (UIDPLUS) for UID EXPUNGE, RFC 6851 for
MOVE, RFC 7162 3.1.3 for UNCHANGEDSINCE, and the UID FETCH CHANGEDSINCE that checks what a
STORE left behind (RFC 7162 3.1.4.1, 3.2.6). Each returns a :class:`Command` for the caller's
connection to run; nothing here does I/O.
"""

from __future__ import annotations

import re
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
from gateway.imap.responses.fetch import fetches_from_raw

DELETED = "\\Deleted"
# A STORE's answer as servers send it with CONDSTORE: UID, MODSEQ and FLAGS in any order
# (RFC 7162 3.1.3), flags plain atoms; anything else goes through the FETCH parser.
_ANSWER = re.compile(
    rb"\* [0-9]+ FETCH \("
    rb"(?:(?:UID ([0-9]{1,10})|MODSEQ \(([0-9]{1,20})\)|FLAGS \(([!#$&'+-Z^-z|}~\\ ]*)\))"
    rb"(?: (?=[UMF])|\)\Z))+"
)
Answer = tuple[list[str] | None, int | None]


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


# Every UID there can be (RFC 9051 9: a uid is a 32-bit nz-number). A range ending in ``*``
# ends at the highest UID that exists now (Cyrus reads it so), and a VANISHED (EARLIER) about
# UIDs above that, such as the expunge of the folder's last message, is then never sent.
EVERY_UID = "1:4294967295"


def uid_changed_since(uids: Uids, modseq: int) -> Command:
    """``UID FETCH uids (UID) (CHANGEDSINCE n VANISHED)``: every message of ``uids`` whose
    mod-sequence is above ``n`` (answered with its MODSEQ, RFC 7162 3.1.4.1) and every UID of
    ``uids`` expunged since (VANISHED (EARLIER), RFC 7162 3.2.6; QRESYNC must be enabled).
    ``uids`` may be a sequence-set string (:data:`EVERY_UID` to hear of every expunge)."""
    return Command(
        "UID", "FETCH", sequence_set(uids), "(UID)", f"(CHANGEDSINCE {int(modseq)} VANISHED)"
    )


def read_answer(raw: bytes) -> tuple[int, list[str] | None, int | None] | None:
    """One untagged FETCH about one message, as the FETCH parser reads it: its UID, FLAGS
    and MODSEQ (None where absent); None when it is no FETCH or names no UID. The usual
    shape costs one regular expression instead of the parser's generic path."""
    match = _ANSWER.fullmatch(raw)
    if match is not None and match.group(1) is not None:
        uid_text, modseq_text, flags_text = match.groups()
        flags = None if flags_text is None else flags_text.decode("ascii").split()
        return int(uid_text), flags, None if modseq_text is None else int(modseq_text)
    parsed = fetches_from_raw((raw,))
    if len(parsed) != 1:
        return None
    ((uid, item),) = parsed.items()
    return uid, item.flags, item.modseq


def store_answers(raws: Iterable[bytes]) -> tuple[dict[int, Answer], bool]:
    """A STORE's untagged answers: uid -> (flags, mod-sequence), as the FETCH parser reads
    them (several for one message merged in order), and whether every answer was a FETCH
    with a UID, one per message (anything else, EXISTS, EXPUNGE or a FETCH without UID,
    tells of a change beside the STORE's)."""
    found: dict[int, Answer] = {}
    clean = True
    for raw in raws:
        answer = read_answer(raw)
        clean = add_answer(found, answer) and clean if answer is not None else False
    return found, clean


def add_answer(found: dict[int, Answer], answer: tuple[int, list[str] | None, int | None]) -> bool:
    """Add one :func:`read_answer` to ``found``, merged over an earlier one of the same
    message as the FETCH parser merges them; False when there was one (not one answer per
    message)."""
    uid, flags, modseq = answer
    earlier = found.get(uid)
    if earlier is not None:
        flags = earlier[0] if flags is None else flags
        modseq = earlier[1] if modseq is None else modseq
    found[uid] = (flags, modseq)
    return earlier is None
