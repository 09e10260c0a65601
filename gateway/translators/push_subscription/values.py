"""The values a client gives PushSubscription/set (RFC 8620 7.2), checked and bounded.

Every check here needs no network: the URL's host is resolved by /set itself after these.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from gateway.jmap.errors import SetError
from gateway.jmap.standard import InvalidValue, as_utc_date
from gateway.webpush.destinations import DestinationPolicy, RefusedDestination, check_url
from gateway.webpush.encryption import check_keys

# Bounds on what a client stores: a deviceClientId is a hash (RFC 8620 7.2 RECOMMENDS a secure
# hash), a push service's URL a few hundred characters, a type name a short word.
MAX_DEVICE_CLIENT_ID = 255
MAX_URL = 2048
MAX_TYPES = 64
MAX_TYPE_NAME = 64

CREATE_NAMES: Final = frozenset(
    {"deviceClientId", "url", "keys", "verificationCode", "expires", "types"}
)


@dataclass(frozen=True)
class Expiry:
    """The expiry stored (epoch s) and whether it differs from what the client asked for
    (then /set returns it: RFC 8620 5.3, and 7.2's example)."""

    seconds: int
    changed: bool


def check_names(props: dict[str, Any], allowed: frozenset[str]) -> None:
    """RFC 8620 5.3: unknown and server-set properties are invalidProperties (a path into a
    property is not one: PushSubscription's properties are set whole)."""
    bad = sorted(name for name in props if name not in allowed)
    if bad:
        raise SetError.invalid_properties(bad, "unknown, server-set or immutable properties")


def device_client_id(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_DEVICE_CLIENT_ID:
        raise SetError.invalid_properties(
            ["deviceClientId"], f"must be a String of 1 to {MAX_DEVICE_CLIENT_ID} characters"
        )
    return value


def url(value: object, policy: DestinationPolicy) -> str:
    """RFC 8620 7.2: "This MUST begin with https://"; and no host a push could probe the
    operator's network through (gateway.webpush.destinations)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URL:
        raise SetError.invalid_properties(["url"], f"must be a String of at most {MAX_URL}")
    try:
        check_url(value, policy)
    except RefusedDestination as refused:
        raise SetError.invalid_properties(["url"], refused.reason) from None
    return value


def keys(value: object) -> dict[str, str] | None:
    """RFC 8620 7.2 / RFC 8291: the client's P-256 key and 16-octet auth secret, or null."""
    if value is None:
        return None
    try:
        check_keys(value)
    except ValueError as bad:
        raise SetError.invalid_properties(["keys"], str(bad)) from None
    checked = cast(Mapping[str, str], value)
    return {"p256dh": checked["p256dh"], "auth": checked["auth"]}


def types(value: object) -> list[str] | None:
    """Null (every type) or type names. Names this server does not know are kept: RFC 8620
    7.2 names them "the same names as the keys in the TypeState object" and defines no error
    for others (its own example lists "Todo"); they simply never match a change."""
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > MAX_TYPES
        or not all(isinstance(t, str) and 0 < len(t) <= MAX_TYPE_NAME for t in value)
    ):
        raise SetError.invalid_properties(
            ["types"], f"must be null or at most {MAX_TYPES} type names"
        )
    return list(dict.fromkeys(value))


def expires(value: object, longest_seconds: int) -> Expiry:
    """RFC 8620 7.2: with credentials that do not expire, the server "SHOULD set an expiry
    time for the push subscription if none is given and limit the expiry time if set too far
    in the future"; the limit is GATEWAY_PUSH_SUBSCRIPTION_SECONDS from now."""
    limit = int(time.time()) + longest_seconds
    if value is None:
        return Expiry(limit, True)
    try:
        asked = as_utc_date(value).timestamp()
    except InvalidValue:
        raise SetError.invalid_properties(["expires"], "must be a UTCDate or null") from None
    if asked > limit:
        return Expiry(limit, True)
    return Expiry(int(asked), int(asked) != asked)
