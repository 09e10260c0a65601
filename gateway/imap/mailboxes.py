"""Commands about mailboxes: SELECT / EXAMINE, STATUS, LIST, LSUB, CREATE, RENAME, DELETE,
SUBSCRIBE and UNSUBSCRIBE (RFC 3501 6.3), with the extensions the gateway uses: QRESYNC
(RFC 7162 3.2.5), LIST-EXTENDED and LIST-STATUS (RFC 5258, RFC 5819), CREATE-SPECIAL-USE
(RFC 6154 5.2). Names are mailbox names as the index keeps them, encoded here (modified
UTF-7, or UTF-8 where ``utf8`` says UTF8=ACCEPT is enabled). Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from gateway.imap.commands import Command, flag_list, mailbox

# RFC 3501 6.3.8: reference "" and pattern "*": every mailbox, at every level.
_EVERY = ('""', '"*"')


class StatusItem(enum.StrEnum):
    """STATUS data items the gateway asks for."""

    MESSAGES = "MESSAGES"
    UNSEEN = "UNSEEN"
    UIDNEXT = "UIDNEXT"
    UIDVALIDITY = "UIDVALIDITY"
    HIGHESTMODSEQ = "HIGHESTMODSEQ"  # RFC 7162 3.1.1
    MAILBOXID = "MAILBOXID"  # RFC 8474 4
    X_GUID = "X-GUID"  # Dovecot's mailbox GUID


class ListReturn(enum.StrEnum):
    """LIST RETURN options (RFC 5258 3.2) besides STATUS."""

    SUBSCRIBED = "SUBSCRIBED"
    SPECIAL_USE = "SPECIAL-USE"  # RFC 6154 5.1
    MYRIGHTS = "MYRIGHTS"  # RFC 8440


def select(name: str, *, utf8: bool, read_only: bool, qresync: tuple[int, int] | None) -> Command:
    """``SELECT`` (``EXAMINE`` when ``read_only``), with ``(QRESYNC (uidvalidity modseq))``
    to hear of flag changes and expunges since that modseq (RFC 7162 3.2.5)."""
    verb = "EXAMINE" if read_only else "SELECT"
    if qresync is None:
        return Command(verb, mailbox(name, utf8=utf8))
    uidvalidity, modseq = (int(n) for n in qresync)
    return Command(verb, mailbox(name, utf8=utf8), f"(QRESYNC ({uidvalidity} {modseq}))")


def status(name: str, items: Iterable[StatusItem], *, utf8: bool) -> Command:
    """``STATUS mailbox (items)``."""
    return Command("STATUS", mailbox(name, utf8=utf8), _items(items))


def list_every(returns: Iterable[ListReturn] = (), status: Iterable[StatusItem] = ()) -> Command:
    """``LIST "" "*"``, with ``RETURN (options STATUS (items))`` when any are asked."""
    options = [*map(str, returns), *(("STATUS", _items(status)) if status else ())]
    if not options:
        return Command("LIST", *_EVERY)
    return Command("LIST", *_EVERY, "RETURN", f"({' '.join(options)})")


def lsub_every() -> Command:
    """``LSUB "" "*"``: the subscriptions, for servers without LIST-EXTENDED."""
    return Command("LSUB", *_EVERY)


def create(name: str, *, utf8: bool, special_use: str | None = None) -> Command:
    """``CREATE mailbox``, with ``(USE (\\Attr))`` (RFC 6154 5.2) for a special use."""
    use = (f"(USE {flag_list([special_use])})",) if special_use is not None else ()
    return Command("CREATE", mailbox(name, utf8=utf8), *use)


def rename(old: str, new: str, *, utf8: bool) -> Command:
    return Command("RENAME", mailbox(old, utf8=utf8), mailbox(new, utf8=utf8))


def delete(name: str, *, utf8: bool) -> Command:
    return Command("DELETE", mailbox(name, utf8=utf8))


def subscribe(name: str, *, utf8: bool, subscribed: bool = True) -> Command:
    """``SUBSCRIBE mailbox``, or ``UNSUBSCRIBE`` when ``subscribed`` is False."""
    return Command("SUBSCRIBE" if subscribed else "UNSUBSCRIBE", mailbox(name, utf8=utf8))


def _items(items: Iterable[StatusItem]) -> str:
    return f"({' '.join(items)})"
