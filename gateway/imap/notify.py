"""NOTIFY (RFC 5465) commands, pure: what the watcher sends before it IDLEs with nothing selected.

Dovecot accepts one form only (measured, harness README 1.4 and plan15): each event group in its
own parentheses, ``(personal (MessageNew MessageExpunge FlagChange MailboxName
SubscriptionChange))``; ``MailboxMetadataChange`` in that group is refused with ``[BADEVENT]``,
and a fetch-att list is allowed only for ``selected``. Without CONDSTORE enabled a pure flag
change moves no STATUS item, so nothing is reported: :func:`enable_for_notify` comes first.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.imap.commands import Command

# The events of the "personal" mailboxes the watcher needs (RFC 5465 5.1-5.5).
PERSONAL_EVENTS = (
    "MessageNew",
    "MessageExpunge",
    "FlagChange",
    "MailboxName",
    "SubscriptionChange",
)
# The event names RFC 5465 5 defines, which a caller may ask for.
KNOWN_EVENTS = frozenset(
    {
        "MessageNew",
        "MessageExpunge",
        "FlagChange",
        "AnnotationChange",
        "MailboxName",
        "SubscriptionChange",
        "MailboxMetadataChange",
        "ServerMetadataChange",
    }
)
# With these enabled STATUS carries HIGHESTMODSEQ, so a flag change is reported (RFC 7162 3.1).
NOTIFY_EXTENSIONS = ("CONDSTORE", "QRESYNC")


def notify_set_personal(events: Sequence[str] = PERSONAL_EVENTS) -> Command:
    """``NOTIFY SET (personal (events...))``, the form Dovecot accepts."""
    unknown = [e for e in events if e not in KNOWN_EVENTS]
    if unknown or not events:
        raise ValueError(f"not RFC 5465 events: {unknown or 'none given'}")
    if ("MessageNew" in events) != ("MessageExpunge" in events):
        # RFC 5465 5: the two go together; Dovecot answers BAD "MessageNew and
        # MessageExpunge must be together" (harness README 1.4).
        raise ValueError("MessageNew and MessageExpunge go together")
    return Command("NOTIFY", "SET", f"(personal ({' '.join(events)}))")


def notify_none() -> Command:
    """``NOTIFY NONE``: back to RFC 3501's unsolicited responses for the selected mailbox
    only, e.g. before the connection is used for anything but watching."""
    return Command("NOTIFY", "NONE")


def enable_for_notify(capabilities: frozenset[str], enabled: frozenset[str]) -> Command | None:
    """``ENABLE CONDSTORE`` (and QRESYNC where offered) unless already enabled; None if
    nothing is left to enable or the server offers neither."""
    wanted = [e for e in NOTIFY_EXTENSIONS if e in capabilities and e not in enabled]
    return Command("ENABLE", *wanted) if wanted else None


def can_notify(capabilities: frozenset[str]) -> bool:
    """Whether the watcher's NOTIFY strategy works here: NOTIFY to hear of every mailbox, IDLE
    to wait for it (Dovecot pushes the selected mailbox's changes reliably only in IDLE), and
    CONDSTORE so that a flag change moves a STATUS item. Otherwise: IDLE on INBOX and polling."""
    return {"NOTIFY", "IDLE", "CONDSTORE"} <= capabilities
