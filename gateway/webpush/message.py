"""One push request's body and header fields (RFC 8030 5, RFC 8291, RFC 8292).

The body limit counts what goes on the wire: push services must accept 4096 octets of body
(RFC 8030 7.2) and may refuse more, so an encrypted push has 4096 minus the aes128gcm
overhead (86-octet header, padding delimiter, 16-octet tag) for its JSON.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gateway.webpush.encryption import OVERHEAD_OCTETS, encrypt
from gateway.webpush.vapid import Vapid

# RFC 8030 7.2 (and RFC 8291 4): a push service MUST accept bodies of up to 4096 octets.
MAX_PUSH_OCTETS = 4096
# RFC 8030 5.3.
URGENCIES = ("very-low", "low", "normal", "high")
# RFC 8030 5.4: a topic is at most 32 characters of the base64url alphabet.
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class TooLarge(ValueError):
    """The push body, encrypted size included, exceeds MAX_PUSH_OCTETS."""


def max_payload(keys: Mapping[str, str] | None) -> int:
    """The largest JSON payload that fits one push to a subscription with these ``keys``."""
    return MAX_PUSH_OCTETS - (OVERHEAD_OCTETS if keys else 0)


def build(
    payload: bytes,
    keys: Mapping[str, str] | None,
    *,
    ttl: int,
    urgency: str,
    vapid: Vapid | None,
    url: str,
    topic: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and header fields of a push of ``payload`` (JSON) to ``url``: encrypted when
    the subscription has ``keys`` (RFC 8291), signed when the operator has a VAPID key
    (RFC 8292). ``topic`` lets the push service replace an undelivered earlier push."""
    if len(payload) > max_payload(keys):
        raise TooLarge(f"a push to this subscription holds at most {max_payload(keys)} octets")
    if ttl < 0:
        raise ValueError("TTL must not be negative")
    if urgency not in URGENCIES:
        raise ValueError(f"Urgency must be one of {', '.join(URGENCIES)}")
    # RFC 8030 5.2: the TTL header field is required on every push.
    headers = {"TTL": str(ttl), "Urgency": urgency}
    if topic is not None:
        if not _TOPIC.match(topic):
            raise ValueError("Topic must be 1 to 32 base64url characters")
        headers["Topic"] = topic
    if keys:
        body = encrypt(payload, keys["p256dh"], keys["auth"])
        # RFC 8291 4: the aes128gcm content coding; the type of the decrypted body is the
        # application's (RFC 8620 7.2: the StateChange or PushVerification JSON).
        headers["Content-Encoding"] = "aes128gcm"
        headers["Content-Type"] = "application/octet-stream"
    else:
        body = payload
        headers["Content-Type"] = "application/json"
    if vapid is not None:
        headers["Authorization"] = vapid.authorization(url)
    return body, headers
