"""IMAP METADATA commands (RFC 5464): GETMETADATA and SETMETADATA of server entries.

The gateway keeps per-user data it owns (Identities) in the user's private server entries
(mailbox ""), where the user's mail server keeps it with the mail: it survives the loss of
the gateway's Redis and follows the user to another gateway. Values are always sent as
literals (any octets but NUL); NIL removes an entry. Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from gateway.imap.commands import Arg, Command, Group, astring, literal

# RFC 5464 3.2: entries live under /private or /shared; "*" and "%" are not allowed, nor
# "//" or a trailing "/". The gateway writes only names made of these characters.
_ENTRY = re.compile(r"/(?:private|shared)(?:/[A-Za-z0-9._+-]+)+")
# RFC 5464 4.2.2: DEPTH 1 returns the entry and its children, "infinity" everything below.
DEPTHS = ("0", "1", "infinity")
SERVER = ""  # RFC 5464 3.1: the empty mailbox name addresses server entries


def get_metadata(
    entries: Iterable[str], *, depth: str = "0", max_size: int | None = None
) -> Command:
    """``GETMETADATA (MAXSIZE n DEPTH d) "" (entries)`` (RFC 5464 4.2: the options come before
    the mailbox): the server entries,
    and with ``depth`` 1 their children; values longer than ``max_size`` are left out and
    counted in the completion's ``[METADATA LONGENTRIES n]``."""
    if depth not in DEPTHS:
        raise ValueError(f"DEPTH is one of {DEPTHS}, not {depth!r}")
    options: list[str] = []
    if max_size is not None:
        options += ["MAXSIZE", str(int(max_size))]
    if depth != "0":
        options += ["DEPTH", depth]
    names = [_entry(name) for name in entries]
    if not names:
        raise ValueError("GETMETADATA names at least one entry")
    head: tuple[Arg, ...] = (Group(*options),) if options else ()
    return Command("GETMETADATA", *head, astring(SERVER), Group(*names))


def set_metadata(values: Mapping[str, bytes | None]) -> Command:
    """``SETMETADATA "" (entry value ...)`` (RFC 5464 4.3): each value a literal, None as NIL
    (which removes the entry). The server applies all of them or none."""
    if not values:
        raise ValueError("SETMETADATA names at least one entry")
    items: list[Arg] = []
    for name, value in values.items():
        items += [_entry(name), "NIL" if value is None else literal(value)]
    return Command("SETMETADATA", astring(SERVER), Group(*items))


def _entry(name: str) -> str:
    if not _ENTRY.fullmatch(name):
        raise ValueError(f"not an entry name the gateway writes: {name!r}")
    return name
