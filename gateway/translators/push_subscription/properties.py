"""PushSubscription's properties (RFC 8620 7.2), in the order /get returns them by default."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, Final

from gateway.cache.push_subscriptions import Subscription
from gateway.jmap.properties import Property, PropertyTable


class Source(enum.Enum):
    """Every PushSubscription property is read off its stored record."""

    RECORD = "record"


def utc_date(seconds: int) -> str:
    """RFC 8620 1.4 UTCDate."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _code(record: Subscription) -> str | None:
    """The code the client set: null until it did. The server's own code reaches the client
    only through the push (RFC 8620 7.2: the client proves it can receive pushes to the URL)."""
    return record["verificationCode"] if record["verified"] else None


# RFC 8620 7.2: url and keys are private to the device: never returned, nor in the default set.
PRIVATE: Final = frozenset({"url", "keys"})

PROPERTIES: Final = PropertyTable(
    [
        Property("id", Source.RECORD, server_set=True, always=True),
        Property(
            "deviceClientId",
            Source.RECORD,
            immutable=True,
            read=lambda r: r["deviceClientId"],
        ),
        Property("url", Source.RECORD, immutable=True, default=False),
        Property("keys", Source.RECORD, immutable=True, default=False),
        Property("verificationCode", Source.RECORD, read=_code),
        Property("expires", Source.RECORD, read=lambda r: utc_date(r["expires"])),
        Property("types", Source.RECORD, read=lambda r: r["types"]),
    ],
    unknown="unknown PushSubscription properties {}",
)


def render(subscription_id: str, record: Subscription, properties: list[str]) -> dict[str, Any]:
    """The PushSubscription object with exactly ``properties`` (never url or keys)."""
    out: dict[str, Any] = {}
    for name in properties:
        if name == "id":
            out[name] = subscription_id
            continue
        read = PROPERTIES[name].read
        if read is None:
            raise AssertionError(f"{name} is never rendered")
        out[name] = read(record)
    return out
