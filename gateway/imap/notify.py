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

# RFC 5465 5: the events of the "personal" mailboxes the watcher needs; MessageNew and
# MessageExpunge must be given together (RFC 5465 5, "MUST be specified together").
PERSONAL_EVENTS = (
    "MessageNew",
    "MessageExpunge",
    "FlagChange",
    "MailboxName",
    "SubscriptionChange",
)
# RFC 5465 5 event names (and 8's MailboxMetadataChange/ServerMetadataChange) a caller may ask for.
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
        # RFC 5465 5: "If MessageNew is specified, MessageExpunge MUST also be" (and back).
        raise ValueError("MessageNew and MessageExpunge go together")
    return Command("NOTIFY", "SET", f"(personal ({' '.join(events)}))")


def notify_none() -> Command:
    """RFC 5465 3.1: ``NOTIFY NONE`` stops every notification (and leaves IDLE-free polling)."""
    return Command("NOTIFY", "NONE")


def enable_for_notify(capabilities: frozenset[str], enabled: frozenset[str]) -> Command | None:
    """``ENABLE CONDSTORE`` (and QRESYNC where offered) unless already enabled; None if
    nothing is left to enable or the server offers neither."""
    wanted = [e for e in NOTIFY_EXTENSIONS if e in capabilities and e not in enabled]
    return Command("ENABLE", *wanted) if wanted else None
