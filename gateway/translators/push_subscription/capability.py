"""What the Session tells of push subscriptions.

RFC 9749: the VAPID public key pushes are signed with, so a client can hand it to its push
service when it asks for an endpoint (``applicationServerKey``). And the gateway's own
capability: whether changes made by other IMAP clients reach a subscription while none of
the user's clients is connected (only with the operator's master login, which watches the
upstream without the user's password), so a client knows whether to poll on wake-up.
"""

from __future__ import annotations

from gateway.config import Settings
from gateway.jmap.protocol import JsonObject
from gateway.push.background import background_watching
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


def push_capability(settings: Settings, discovered: Discovered) -> JsonObject:
    """``changesByOtherClients``: false means only changes made through the gateway (and
    those found while one of the user's clients is connected) are pushed."""
    return {"changesByOtherClients": background_watching(settings)}
