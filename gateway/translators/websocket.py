"""The WebSocket capability (RFC 8887 3): where clients open JMAP over WebSocket.

The gateway serves no methods of its own under this capability; its Session object says where
the socket is and that it carries push notifications (gateway.ws). The URL follows the scheme
of the Session's base URL, so a gateway behind TLS (https) advertises wss.
"""

from __future__ import annotations

from gateway.config import Settings
from gateway.jmap.capabilities import WEBSOCKET
from gateway.jmap.protocol import JsonObject
from gateway.jmap.session import WS_PATH
from gateway.translators.spec import Capability, Discovered, Spec


def websocket_url(base_url: str) -> str:
    """The ws:// or wss:// URL of the socket under ``base_url`` (http:// or https://)."""
    scheme, separator, rest = base_url.rstrip("/").partition("://")
    if not separator or scheme.lower() not in ("http", "https"):
        raise ValueError(f"not an http(s) base URL: {base_url!r}")
    return ("wss" if scheme.lower() == "https" else "ws") + "://" + rest + WS_PATH


def capability(settings: Settings, discovered: Discovered) -> JsonObject:
    """RFC 8887 3: the session capability object."""
    return {"url": websocket_url(settings.base_url), "supportsPush": True}


SPEC = Spec(WEBSOCKET, (), declares=Capability(WEBSOCKET, session=capability))
