"""Refusing push streams a web page opens with credentials the browser attached by itself.

A browser sends cached Basic credentials with any request to the gateway's host, including a
WebSocket handshake or an EventSource request made by a script of another site; neither kind
of request is held back by CORS (cross-site WebSocket hijacking). Such a stream would hand the
user's mail events, and over a WebSocket the whole JMAP API, to that site. Browsers always name
the page's origin in the ``Origin`` header (RFC 6455 4.1, item 8; RFC 6454 7), so a request that
carries one and authenticates with Basic is served only when the origin is the gateway's own
(the scheme, host and port of the Session's base URL) or one the operator listed in
GATEWAY_PUSH_ALLOWED_ORIGINS. Bearer tokens and push tokens are never attached by a browser on
its own: a page that sends one had it, so they pass. A request without ``Origin`` is not a
browser's and passes too.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from gateway.config import Settings

# RFC 6454 4: a URL's origin leaves out its scheme's default port.
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def origin_of(url: str) -> str | None:
    """RFC 6454 6.1: the ASCII serialisation of ``url``'s origin (``scheme://host[:port]``, in
    lower case, without the default port), or None for what has none (``null``, no host)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    host = f"[{host}]" if ":" in host else host
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def site_origin(settings: Settings) -> str | None:
    """The gateway's own origin: that of the base URL its Session advertises."""
    return origin_of(settings.base_url)


def allowed_origins(settings: Settings) -> frozenset[str]:
    """GATEWAY_PUSH_ALLOWED_ORIGINS, each serialised as :func:`origin_of` does."""
    origins = (origin_of(item) for item in settings.push_allowed_origins.split(","))
    return frozenset(origin for origin in origins if origin is not None)


def ambient_credentials_refused(
    headers: Mapping[str, str], settings: Settings, own_origin: str | None
) -> bool:
    """Whether a push request must be refused (403) because a page of a foreign origin made it
    with Basic credentials (see the module docstring).

    ``headers`` is looked up with lower-case names (ASGI's header names are lower case; a
    starlette ``Headers`` ignores case); ``own_origin`` is usually :func:`site_origin`.
    """
    origin = headers.get("origin")
    if origin is None:
        return False
    scheme = headers.get("authorization", "").strip().partition(" ")[0]
    if scheme.lower() != "basic":
        return False
    seen = origin_of(origin)
    if seen is None:
        return True  # "null" (a sandboxed page, a file) or garbage: never trusted
    return seen != own_origin and seen not in allowed_origins(settings)
