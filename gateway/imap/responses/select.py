"""SELECT / EXAMINE (RFC 3501 6.3.1, RFC 7162 3.1.2 and 3.2.5, RFC 8474 4.1): the untagged
responses and the completion folded into one :class:`SelectState`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.imap.errors import CommandFailed, ProtocolError
from gateway.imap.responses.fetch import FetchItem, parse_fetch
from gateway.imap.responses.tokens import ResponseCode, Tagged, Untagged, Value
from gateway.imap.responses.values import as_atom_list, as_int, as_object_id, single_value
from gateway.imap.responses.vanished import parse_vanished
from gateway.imap.sequence import UidSet


@dataclass(frozen=True, slots=True)
class SelectState:
    """What SELECT or EXAMINE told about the mailbox just opened."""

    exists: int
    uidvalidity: int
    uidnext: int | None = None
    recent: int = 0
    first_unseen: int | None = None
    highestmodseq: int | None = None  # None also for [NOMODSEQ]
    flags: frozenset[str] = frozenset()
    permanent_flags: frozenset[str] | None = None  # None: not sent, all flags permanent
    read_only: bool = False
    mailbox_id: str | None = None
    vanished: UidSet = field(default_factory=UidSet)  # RFC 7162 VANISHED (EARLIER)
    fetches: tuple[FetchItem, ...] = ()


@dataclass(slots=True)
class _SelectFold:
    """Mutable twin of SelectState while the responses are folded in."""

    exists: int | None = None
    uidvalidity: int | None = None
    uidnext: int | None = None
    recent: int = 0
    first_unseen: int | None = None
    highestmodseq: int | None = None
    flags: frozenset[str] = frozenset()
    permanent_flags: frozenset[str] | None = None
    read_only: bool = False
    mailbox_id: str | None = None
    vanished: UidSet = field(default_factory=UidSet)
    fetches: list[FetchItem] = field(default_factory=list)


def fold_select(responses: Iterable[Untagged], completion: Tagged) -> SelectState:
    """Fold the untagged responses of a SELECT/EXAMINE and its tagged completion.

    A tagged NO/BAD raises :class:`CommandFailed`. RFC 7162 3.2.11: responses before
    ``[CLOSED]`` belong to the previously selected mailbox and are dropped.
    """
    if completion.status != "OK":
        code = None if completion.code is None else completion.code.name
        raise CommandFailed(completion.status, code, completion.text)
    fold = _SelectFold()
    for response in responses:
        if response.code is not None and response.code.name == "CLOSED":
            fold = _SelectFold()
        else:
            _fold_response(fold, response)
    if completion.code is not None:
        _fold_code(fold, completion.code)
    return _select_state(fold)


def _select_state(fold: _SelectFold) -> SelectState:
    # RFC 3501 6.3.1: EXISTS and [UIDVALIDITY] are REQUIRED; the gateway cannot work without.
    if fold.exists is None or fold.uidvalidity is None:
        raise ProtocolError("SELECT response lacks EXISTS or UIDVALIDITY")
    return SelectState(
        exists=fold.exists,
        uidvalidity=fold.uidvalidity,
        uidnext=fold.uidnext,
        recent=fold.recent,
        first_unseen=fold.first_unseen,
        highestmodseq=fold.highestmodseq,
        flags=fold.flags,
        permanent_flags=fold.permanent_flags,
        read_only=fold.read_only,
        mailbox_id=fold.mailbox_id,
        vanished=fold.vanished,
        fetches=tuple(fold.fetches),
    )


def _fold_response(fold: _SelectFold, response: Untagged) -> None:
    if response.keyword == "OK" and response.code is not None:
        _fold_code(fold, response.code)
    elif response.keyword == "EXISTS":
        fold.exists = _message_count(response)
    elif response.keyword == "RECENT":
        fold.recent = _message_count(response)
    elif response.keyword == "FLAGS":
        fold.flags = _flag_set(response.values, "FLAGS")
    elif response.keyword == "VANISHED":
        fold.vanished |= parse_vanished(response).uids
    elif response.keyword == "FETCH":
        fold.fetches.append(parse_fetch(response))


def _message_count(response: Untagged) -> int:
    if response.number is None or response.values:
        raise ProtocolError(f"malformed {response.keyword} response")
    return response.number


def _fold_code(fold: _SelectFold, code: ResponseCode) -> None:
    entry = _SELECT_CODES.get(code.name)
    if entry is not None:
        attribute, convert = entry
        setattr(fold, attribute, convert(code))


def _flag_set(args: list[Value], what: str) -> frozenset[str]:
    return frozenset(as_atom_list(single_value(args, what), what))


def _single_int(code: ResponseCode) -> int:
    return as_int(single_value(code.args, code.name), code.name)


_SELECT_CODES: dict[str, tuple[str, Callable[[ResponseCode], object]]] = {
    "UIDVALIDITY": ("uidvalidity", _single_int),
    "UIDNEXT": ("uidnext", _single_int),
    "UNSEEN": ("first_unseen", _single_int),
    "HIGHESTMODSEQ": ("highestmodseq", _single_int),
    "NOMODSEQ": ("highestmodseq", lambda code: None),  # RFC 7162 3.1.2.2
    "PERMANENTFLAGS": ("permanent_flags", lambda code: _flag_set(code.args, code.name)),
    "READ-ONLY": ("read_only", lambda code: True),
    "READ-WRITE": ("read_only", lambda code: False),
    "MAILBOXID": (
        "mailbox_id",
        lambda code: as_object_id(single_value(code.args, code.name), code.name),
    ),
}
