"""The values an Identity's properties may take (RFC 8621 6.1), checked and bounded.

Every identity is one METADATA entry and one Redis value per account, kept for as long as
the account lives, so each property is bounded here, where a client's value comes in.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.senders import is_address

MAX_NAME = 256  # characters of a name (the identity's, or an EmailAddress's)
MAX_ADDRESSES = 20  # EmailAddress objects in replyTo, and in bcc
MAX_SIGNATURE_OCTETS = 32 * 1024  # UTF-8 octets of textSignature, and of htmlSignature
# Control characters have no place in a name or an address (they would end up in header
# fields); signatures are text and may hold line breaks and tabs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SIGNATURE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# RFC 8621 6.1: the properties a client sets, their record fields, and their defaults.
FIELDS = {
    "name": "name",
    "email": "email",
    "replyTo": "reply_to",
    "bcc": "bcc",
    "textSignature": "text_signature",
    "htmlSignature": "html_signature",
}
DEFAULTS: dict[str, Any] = {
    "name": "",
    "replyTo": None,
    "bcc": None,
    "textSignature": "",
    "htmlSignature": "",
}


class InvalidIdentity(Exception):
    """A property's value is not allowed; the /set answers invalidProperties naming it."""

    def __init__(self, prop: str, description: str) -> None:
        super().__init__(f"{prop}: {description}")
        self.prop = prop
        self.description = description


def identity_values(data: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Record fields from the JMAP properties in ``data`` (all of them when ``creating``,
    the defaults filling what is left out), each checked."""
    values = {**DEFAULTS, **data} if creating else data
    if creating and "email" not in values:
        raise InvalidIdentity("email", "is required")
    return {FIELDS[prop]: check(prop, value) for prop, value in values.items() if prop in FIELDS}


def check(prop: str, value: Any) -> Any:
    """``value`` if property ``prop`` may take it, else InvalidIdentity."""
    if prop == "name":
        return _name(value, prop)
    if prop == "email":
        if not isinstance(value, str) or not is_address(value):
            raise InvalidIdentity(prop, "must be an address local@domain")
        return value
    if prop in ("replyTo", "bcc"):
        return _addresses(value, prop)
    if prop in ("textSignature", "htmlSignature"):
        if not isinstance(value, str) or _SIGNATURE_CONTROL.search(value):
            raise InvalidIdentity(prop, "must be text")
        if len(_utf8(value, prop)) > MAX_SIGNATURE_OCTETS:
            raise InvalidIdentity(prop, f"must be at most {MAX_SIGNATURE_OCTETS} octets")
        return value
    raise InvalidIdentity(prop, "is not an Identity property")


def _name(value: Any, prop: str) -> str:
    if not isinstance(value, str) or _CONTROL.search(value):
        raise InvalidIdentity(prop, "must be a String without control characters")
    if len(value) > MAX_NAME:
        raise InvalidIdentity(prop, f"must be at most {MAX_NAME} characters")
    _utf8(value, prop)
    return value


def _utf8(value: str, prop: str) -> bytes:
    """A lone surrogate (JSON allows "\\ud800") has no UTF-8 form: no entry could hold it."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidIdentity(prop, "must be valid Unicode text") from None


def _addresses(value: Any, prop: str) -> list[dict[str, Any]] | None:
    """RFC 8621 4.1.2.3 EmailAddress[] or null."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_ADDRESSES:
        raise InvalidIdentity(prop, f"must be null or at most {MAX_ADDRESSES} EmailAddress objects")
    addresses = []
    for item in value:
        if not isinstance(item, dict) or not set(item) <= {"name", "email"}:
            raise InvalidIdentity(prop, "each item is an EmailAddress: name and email")
        email = item.get("email")
        if not isinstance(email, str) or not is_address(email):
            raise InvalidIdentity(prop, "each email must be an address local@domain")
        name = item.get("name")
        addresses.append({"name": None if name is None else _name(name, prop), "email": email})
    return addresses
