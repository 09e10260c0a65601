"""What an unsolicited untagged response during IDLE says changed (RFC 2177, RFC 5465 5).

The watcher does not apply these: any signal makes it run a catch-up. So each response is
reduced to a small :data:`Signal` saying which mailbox (NOTIFY's STATUS and LIST) or that the
selected one (EXISTS, EXPUNGE, VANISHED, FETCH, FLAGS) changed. BYE ends the session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

from gateway.imap.errors import ConnectionLost, ProtocolError
from gateway.imap.responses.list import parse_list
from gateway.imap.responses.status import parse_status
from gateway.imap.responses.tokens import Untagged, Value, parse_response
from gateway.imap.responses.values import as_list, decode_mailbox_name, mailbox_raw

SelectedKind: TypeAlias = Literal["EXISTS", "EXPUNGE", "VANISHED", "FETCH", "FLAGS"]
_SELECTED_KINDS: dict[str, SelectedKind] = {
    "EXISTS": "EXISTS",
    "EXPUNGE": "EXPUNGE",
    "VANISHED": "VANISHED",
    "FETCH": "FETCH",
    "FLAGS": "FLAGS",
}
# RFC 5465 5.8: the overflow code; the client must resynchronize everything.
_OVERFLOW = "NOTIFICATIONOVERFLOW"


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """``* STATUS name (items)``: NOTIFY's report of a change in a mailbox not selected."""

    name: str
    items: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class MailboxListed:
    """``* LIST``: a mailbox created, renamed (``old_name`` from RFC 5465 5.4's OLDNAME),
    deleted (``\\NonExistent``) or (un)subscribed (``\\Subscribed``)."""

    name: str
    attributes: frozenset[str]
    old_name: str | None


@dataclass(frozen=True, slots=True)
class SelectedChanged:
    """The selected mailbox changed: new or expunged messages, flags, or its flag list."""

    kind: SelectedKind


@dataclass(frozen=True, slots=True)
class Overflow:
    """``* OK [NOTIFICATIONOVERFLOW]`` (or too much at once): resynchronize everything."""


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """``* OK Still here`` and any other untagged OK: the connection lives, nothing changed."""


Signal: TypeAlias = MailboxStatus | MailboxListed | SelectedChanged | Overflow | KeepAlive


def classify(raw: bytes, *, utf8: bool = False) -> Signal | None:
    """The signal of one complete untagged response (as the framer cut it); None when it
    says nothing about changes (``* 3 RECENT``, ``* CAPABILITY``).

    ``utf8`` when UTF8=ACCEPT (RFC 6855) is enabled, so names are UTF-8 not modified UTF-7.
    Raises :class:`ConnectionLost` for BYE, :class:`ProtocolError` for malformed data.
    """
    response = parse_response(raw)
    if not isinstance(response, Untagged):
        raise ProtocolError("untagged response expected")
    keyword = response.keyword
    if keyword == "BYE":
        raise ConnectionLost(f"upstream said BYE: {response.text[:100]}")
    if keyword == "OK":
        code = response.code
        if code is not None and code.name == _OVERFLOW:
            return Overflow()
        return KeepAlive()
    if keyword in ("NO", "BAD"):
        # A warning (RFC 3501 7.1.2) may mean lost events: Dovecot never sends
        # NOTIFICATIONOVERFLOW but "* NO NOTIFY error, some events may have got lost"
        # (src/imap/imap-notify.c). Resynchronizing costs one catch-up; missing it, a change.
        return Overflow()
    if keyword == "STATUS":
        entry = parse_status(response, utf8=utf8 or _eight_bit(response.values, 0))
        return MailboxStatus(entry.name, entry.items)
    if keyword == "LIST":
        listed = parse_list(response, utf8=utf8 or _eight_bit(response.values, 2))
        old = listed.extended.get("OLDNAME")
        return MailboxListed(listed.name, listed.attributes, _old_name(old, utf8))
    kind = _SELECTED_KINDS.get(keyword)
    return None if kind is None else SelectedChanged(kind)


def _eight_bit(values: list[Value], index: int) -> bool:
    """Dovecot 2.3 sends NOTIFY's mailbox names in UTF-8 (as a literal) even without
    UTF8=ACCEPT (measured: ``* LIST () "/" {9}`` and "Entwürfe" in UTF-8; its imap-notify.c
    writes the internal UTF-8 name where LIST writes modified UTF-7). Modified UTF-7 is 7-bit
    by definition, so a name with 8-bit octets can only be UTF-8."""
    value = values[index] if index < len(values) else None
    return isinstance(value, bytes) and not value.isascii()


def _old_name(value: Value, utf8: bool) -> str | None:
    """RFC 5465 5.4 / RFC 5258: ``("OLDNAME" (old-name))``: a list of one mailbox name."""
    if value is None:
        return None
    items = as_list(value, "OLDNAME")
    if len(items) != 1:
        raise ProtocolError("OLDNAME holds one mailbox name")
    return decode_mailbox_name(mailbox_raw(items[0]), utf8=utf8 or _eight_bit(items, 0))
