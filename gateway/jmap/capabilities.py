"""Capability identifiers and the core capability object (RFC 8620 2).

Every capability URN the gateway knows lives here, so the session builder, the
method table and the tests all spell them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
VACATION = "urn:ietf:params:jmap:vacationresponse"
WEBSOCKET = "urn:ietf:params:jmap:websocket"
# RFC 9749: the VAPID public key push subscriptions are signed with.
WEBPUSH_VAPID = "urn:ietf:params:jmap:webpush-vapid"
# The gateway's own capability (RFC 8620 2: clients ignore capabilities they do not know):
# what its push covers. A URN in the project's name, as the project owns no domain.
GATEWAY_PUSH = "urn:jmap-gateway:push"


@dataclass(frozen=True)
class CoreLimits:
    """The server limits advertised under CORE; the defaults are the RFC's suggested minimums.

    The same object is handed to the request parser and the standard-method parsers, so
    what the session advertises is exactly what the server enforces. It travels with each
    parsed Request, so the processor enforces the same limits on what references resolve to.
    """

    max_size_upload: int = 50_000_000
    max_concurrent_upload: int = 4
    max_size_request: int = 10_000_000
    max_concurrent_requests: int = 4
    max_calls_in_request: int = 16
    max_objects_in_get: int = 500
    max_objects_in_set: int = 500
    collation_algorithms: tuple[str, ...] = ()
    # Not a capability property (RFC 8620 defines none for it), so never advertised: the most
    # octets of method responses one request gets before read-only calls answer
    # requestTooLarge (see gateway.jmap.dispatch).
    max_size_response: int = 50_000_000

    def __post_init__(self) -> None:
        """Refuse limits a client could not satisfy, so a bad config fails at start-up."""
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int) and value < 1:
                raise ValueError(f"{field.name} must be at least 1, not {value}")

    def to_capability(self) -> dict[str, Any]:
        """Return the value of the CORE key in the session's capabilities (RFC 8620 2)."""
        return {
            "maxSizeUpload": self.max_size_upload,
            "maxConcurrentUpload": self.max_concurrent_upload,
            "maxSizeRequest": self.max_size_request,
            "maxConcurrentRequests": self.max_concurrent_requests,
            "maxCallsInRequest": self.max_calls_in_request,
            "maxObjectsInGet": self.max_objects_in_get,
            "maxObjectsInSet": self.max_objects_in_set,
            "collationAlgorithms": list(self.collation_algorithms),
        }
