"""What an Email/set update asks for (RFC 8621 4.6, RFC 8620 5.3 PatchObject).

Only ``keywords`` and ``mailboxIds`` of a stored Email can change (the mutable ones of the
property table, gateway.translators.email.properties). Each may be replaced whole or
patched one key at a time (``keywords/$seen``, ``mailboxIds/<id>``); the two forms are kept
apart because they call for different upstream work: a patch adds or removes exactly
the flags it names and commutes with whatever another client does meanwhile, while a whole
value must end up exact, so the gateway guards it against changes it has not seen yet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.jmap.errors import SetError
from gateway.translators.email.properties import PROPERTIES
from gateway.translators.keywords import is_valid_keyword

KEYWORDS = "keywords"
MAILBOX_IDS = "mailboxIds"
# An Email's keywords beyond this many are refused (tooManyKeywords): IMAP servers keep
# keywords per folder in small tables (Cyrus: 128 per mailbox), so a runaway client must not
# fill them through one message.
MAX_KEYWORDS = 64


@dataclass(frozen=True)
class SetChange:
    """One property's requested change: a whole new value, or keys to add and remove."""

    whole: frozenset[str] | None = None
    add: frozenset[str] = frozenset()
    remove: frozenset[str] = frozenset()

    @property
    def requested(self) -> bool:
        return self.whole is not None or bool(self.add or self.remove)

    def applied(self, current: frozenset[str]) -> frozenset[str]:
        base = self.whole if self.whole is not None else current
        return (base | self.add) - self.remove


@dataclass(frozen=True)
class EmailPatch:
    """The keywords (lower-cased) and mailbox ids an update sets."""

    keywords: SetChange = field(default_factory=SetChange)
    mailboxes: SetChange = field(default_factory=SetChange)


def parse_patch(
    patch: Mapping[str, Any], resolve_mailbox: Callable[[str], str | None]
) -> EmailPatch:
    """Check a PatchObject; raise the SetError it deserves.

    ``resolve_mailbox`` turns a mailbox id or ``#creationId`` into a mailbox id, or None
    when there is no such mailbox.
    """
    keywords: dict[str, Any] = {}
    mailboxes: dict[str, Any] = {}
    invalid: list[str] = []
    for path, value in patch.items():
        head, sep, rest = path.partition("/")
        if head not in PROPERTIES.mutable:
            # RFC 8621 4.1: every other property is immutable or server-set.
            invalid.append(head)
            continue
        target = keywords if head == KEYWORDS else mailboxes
        if sep and not rest:
            raise SetError("invalidPatch", f"{path!r} does not name a key")
        if sep and "/" in rest:
            raise SetError("invalidPatch", f"{path!r} goes deeper than {head}")
        target[_unescape(rest) if sep else ""] = value
    if invalid:
        raise SetError.invalid_properties(invalid, "only keywords and mailboxIds can change")
    return EmailPatch(
        _change(KEYWORDS, keywords, _keyword), _change(MAILBOX_IDS, mailboxes, resolve_mailbox)
    )


def _unescape(token: str) -> str:
    """RFC 6901 reference token: ``~1`` is "/", ``~0`` is "~"."""
    if "~" in token.replace("~0", "").replace("~1", ""):
        raise SetError("invalidPatch", f"{token!r} is not a valid JSON pointer token")
    return token.replace("~1", "/").replace("~0", "~")


def _keyword(key: str) -> str | None:
    return key.lower() if is_valid_keyword(key) else None


def _change(name: str, items: dict[str, Any], convert: Callable[[str], str | None]) -> SetChange:
    if not items:
        return SetChange()
    if "" in items:
        if len(items) > 1:
            # RFC 8620 5.3: no patch may name a path inside another one it sets.
            raise SetError("invalidPatch", f"{name} is set whole and patched at once")
        return SetChange(whole=frozenset(_whole(name, items[""], convert)))
    add: set[str] = set()
    remove: set[str] = set()
    for key, value in items.items():
        converted = convert(key)
        path = f"{name}/{key}"
        if value is True and converted is not None:
            add.add(converted)
        elif value is None and converted is not None:
            remove.add(converted)
        elif value is not True and value is not None:
            raise SetError.invalid_properties([path], "must be true or null")
        elif name == KEYWORDS:
            raise SetError.invalid_properties([path], "not a valid keyword")
        elif value is True:
            raise SetError.invalid_properties([path], "no such mailbox")
        # Removing a mailbox that does not exist changes nothing.
    if add & remove:
        # "keywords/$Seen" and "keywords/$seen" name one keyword (RFC 8621 4.1.1).
        raise SetError("invalidPatch", f"{name}: a key is both added and removed")
    return SetChange(add=frozenset(add), remove=frozenset(remove))


def _whole(name: str, value: Any, convert: Callable[[str], str | None]) -> set[str]:
    if not isinstance(value, dict):
        raise SetError.invalid_properties([name], "must be an object")
    converted: set[str] = set()
    for key, item in value.items():
        if item is not True:
            raise SetError.invalid_properties([f"{name}/{key}"], "values must be true")
        found = convert(key)
        if found is None:
            why = "not a valid keyword" if name == KEYWORDS else "no such mailbox"
            raise SetError.invalid_properties([f"{name}/{key}"], why)
        converted.add(found)
    return converted
