"""RFC 9749: the Session advertises the VAPID public key pushes are signed with, so a client
can hand it to its push service when it asks for an endpoint (``applicationServerKey``)."""

from __future__ import annotations

from gateway.config import Settings
from gateway.jmap.protocol import JsonObject
from gateway.translators.spec import Discovered
from gateway.webpush.vapid import Vapid


def vapid_configured(settings: Settings) -> bool:
    """The capability exists only where the operator configured a VAPID key pair."""
    return settings.webpush_vapid_private_key is not None


def vapid_capability(settings: Settings, discovered: Discovered) -> JsonObject:
    """RFC 9749 3: ``applicationServerKey``, the P-256 public key in uncompressed form,
    base64url (RFC 8292 3.2)."""
    vapid = Vapid.from_settings(settings)
    if vapid is None:
        raise ValueError("the VAPID capability needs GATEWAY_WEBPUSH_VAPID_PRIVATE_KEY")
    return {"applicationServerKey": vapid.public_key_b64url}
