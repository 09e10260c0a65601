"""Which push URLs the gateway may POST to: the guard against server-side request forgery.

A PushSubscription's URL is chosen by whoever holds a user's credentials, and the gateway
POSTs to it from inside the operator's network. Without a guard, a subscription would be a
probe of that network (metadata services at 169.254.169.254, admin ports on loopback, hosts
on private ranges). So a URL must be https (an operator may allow http for tests), carry no
credentials, and its host must resolve only to public addresses; an operator allow-list
(CIDRs and host names) admits internal push relays. The client connects to the very address
checked here, so a second DNS answer (rebinding) never reaches an unchecked host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

import httpx

from gateway.webpush.resolver import RESOLVER, ResolverBusy

if TYPE_CHECKING:
    from gateway.config import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Push service URLs are well under 1,000 octets; a bound keeps stored records small.
MAX_URL_OCTETS = 2000
# A resolver slower than this is as good as none: the subscription is refused or the push
# retried later, instead of a worker slot waiting on it.
RESOLVE_TIMEOUT_SECONDS = 5.0
# The only port pushes go to unless the operator allows http or the destination.
HTTPS_PORT = 443
# A name with more addresses than this is cut to its first ones (each is checked).
MAX_ADDRESSES = 16

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Every refused IPv4 class, with the words a SetError uses for it (IANA special-purpose
# registry, RFC 6890 and successors). Anything else that ipaddress does not call global is
# refused too, as "a non-public address".
_REFUSED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "an unspecified address"),
    (_V4("127.0.0.0/8"), "a loopback address"),
    (_V4("10.0.0.0/8"), "a private address"),
    (_V4("172.16.0.0/12"), "a private address"),
    (_V4("192.168.0.0/16"), "a private address"),
    (_V4("100.64.0.0/10"), "a shared (carrier-grade NAT) address"),
    (_V4("169.254.0.0/16"), "a link-local address"),
    (_V4("192.0.0.0/24"), "a reserved address"),
    (_V4("192.0.2.0/24"), "a documentation address"),
    (_V4("198.51.100.0/24"), "a documentation address"),
    (_V4("203.0.113.0/24"), "a documentation address"),
    (_V4("198.18.0.0/15"), "a benchmarking address"),
    (_V4("192.88.99.0/24"), "a reserved address"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V4("240.0.0.0/4"), "a reserved address"),
)
_REFUSED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "an unspecified address"),
    (_V6("::1/128"), "a loopback address"),
    (_V6("64:ff9b:1::/48"), "a private address"),
    (_V6("100::/64"), "a reserved address"),
    (_V6("2001:db8::/32"), "a documentation address"),
    (_V6("3fff::/20"), "a documentation address"),
    (_V6("2001::/23"), "a reserved address"),
    (_V6("fc00::/7"), "a unique local address"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a site-local address"),
    (_V6("ff00::/8"), "a multicast address"),
    (_V6("::/8"), "a reserved address"),
)
# IPv6 forms that carry an IPv4 address: that address decides.
_NAT64 = _V6("64:ff9b::/96")
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")


class RefusedDestination(Exception):
    """The gateway will not send to this URL; ``reason`` is short enough for a SetError."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnresolvableHost(RefusedDestination):
    """The URL's host name did not resolve (or not in time). Refused at create; at delivery
    it is a network failure like any other and is retried."""


class LookupBusy(UnresolvableHost):
    """The push lookups' threads (or the account's share of them) are all busy: nothing was
    asked; a create may be tried again later, a delivery is retried (resolver.py)."""


@dataclass(frozen=True)
class Destination:
    """A checked push URL's parts: where to connect, and which name TLS must verify."""

    scheme: str
    host: str  # lower case, IDNA (ASCII), IPv6 without brackets
    port: int
    literal: Address | None  # the host when it is an IP literal


@dataclass(frozen=True)
class DestinationPolicy:
    """Where pushes may go: https only unless ``allow_http``; ``allowed`` networks and host
    names (exact, lower case) pass whatever their addresses."""

    allow_http: bool = False
    allowed: tuple[Network | str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> DestinationPolicy:
        return cls(
            allow_http=settings.webpush_allow_http,
            allowed=parse_allowed(settings.webpush_allowed_destinations),
        )

    def allows_name(self, host: str) -> bool:
        return host in self.allowed

    def has_networks(self) -> bool:
        return any(not isinstance(entry, str) for entry in self.allowed)

    def allows_address(self, address: Address) -> bool:
        return any(
            not isinstance(entry, str) and entry.version == address.version and address in entry
            for entry in self.allowed
        )


def parse_allowed(text: str) -> tuple[Network | str, ...]:
    """``GATEWAY_WEBPUSH_ALLOWED_DESTINATIONS``: CIDRs, addresses and host names separated by
    commas; raises ValueError naming the first bad entry."""
    entries: list[Network | str] = []
    for raw in text.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        try:
            entries.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        if not _HOST_NAME.match(entry):
            raise ValueError(f"{entry!r} is neither a CIDR, an address nor a host name")
        entries.append(entry.rstrip("."))
    return tuple(entries)


def parse_url(url: str) -> Destination:
    """The URL's parts, or RefusedDestination for anything but a plain absolute URL."""
    if len(url.encode("utf-8", "surrogatepass")) > MAX_URL_OCTETS:
        raise RefusedDestination(f"the URL is longer than {MAX_URL_OCTETS} octets")
    if not url.isprintable() or any(c.isspace() for c in url):
        raise RefusedDestination("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RefusedDestination("the URL is not valid") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise RefusedDestination("the URL must use https")
    if "@" in parts.netloc:
        raise RefusedDestination("the URL must not carry a user name or password")
    if parts.fragment:
        raise RefusedDestination("the URL must not have a fragment")
    host = _host(url, parts)
    if port == 0:
        raise RefusedDestination("the URL's port is not valid")
    literal = _literal(host)
    return Destination(scheme, host, port or (443 if scheme == "https" else 80), literal)


def _host(url: str, parts: SplitResult) -> str:
    """The host as the HTTP client will name it (httpx's IDNA 2008 encoding), lower case and
    without a final dot, so the pinned connection matches the checked name exactly."""
    if not parts.hostname:
        raise RefusedDestination("the URL has no host")
    try:
        raw = httpx.URL(url).raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError):
        raise RefusedDestination("the URL's host name is not valid") from None
    return normal_host(raw)


def normal_host(host: str) -> str:
    """The form names are compared in: lower case, no final dot."""
    return host.lower().rstrip(".")


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0] if ":" in host else host)
    except ValueError:
        if ":" in host:
            raise RefusedDestination("the URL's host is not a valid address") from None
        return None


def refusal(address: Address) -> str | None:
    """Why ``address`` is no place to push to ("a loopback address"), or None if public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_v4(address)
        if embedded is not None:
            reason = refusal(embedded)
            return f"{reason} (IPv4 inside IPv6)" if reason else None
        table: tuple[tuple[Network, str], ...] = _REFUSED_V6
    else:
        table = _REFUSED_V4
    for network, reason in table:
        if address in network:
            return reason
    return None if address.is_global else "a non-public address"


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 (RFC 6052) or 6to4 (RFC 3056) address stands for."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def check_address(destination: Destination, address: Address, policy: DestinationPolicy) -> None:
    """Raise RefusedDestination unless ``address`` is public or the policy admits it, and the
    port is 443 or the policy admits it."""
    if policy.allows_name(destination.host) or policy.allows_address(address):
        return
    reason = refusal(address)
    if reason is not None:
        verb = "is" if destination.literal is not None else "resolves to"
        raise RefusedDestination(f"the host {verb} {reason}")
    _check_port(destination, policy)


def _check_port(destination: Destination, policy: DestinationPolicy) -> None:
    """Only 443 unless the operator allowed http or this destination: the gateway must not be
    a way to send connections (a verification push is tried up to 10 times) to any port of
    any public host."""
    if destination.port != HTTPS_PORT and not policy.allow_http:
        raise RefusedDestination(
            f"the URL's port must be {HTTPS_PORT} (port {destination.port} is not allowed)"
        )


def check_url(url: str, policy: DestinationPolicy) -> Destination:
    """Check everything that needs no DNS: syntax, scheme, credentials, an IP literal's class,
    the port unless an allow-listed network might admit the name's addresses."""
    destination = parse_url(url)
    if destination.scheme == "http" and not policy.allow_http:
        raise RefusedDestination("the URL must use https")
    if destination.literal is not None:
        check_address(destination, destination.literal, policy)
    elif not policy.allows_name(destination.host) and not policy.has_networks():
        _check_port(destination, policy)
    return destination


async def resolve(url: str, policy: DestinationPolicy, account_id: str) -> list[Address]:
    """The checked addresses of the URL's host, refusing it if ANY of them is not public.

    The lookup runs in the push lookups' own threads (resolver.py: never the loop's default
    executor, which IMAP connects use), bounded by RESOLVE_TIMEOUT_SECONDS, and counted
    against ``account_id``'s share. Refusing on any bad address, not just skipping it, means a
    name half pointing inward cannot be used to reach inside on a retry.
    """
    destination = check_url(url, policy)
    return await resolve_destination(destination, policy, account_id)


async def resolve_destination(
    destination: Destination, policy: DestinationPolicy, account_id: str
) -> list[Address]:
    if destination.literal is not None:
        return [destination.literal]
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            infos = await RESOLVER.getaddrinfo(destination.host, destination.port, account_id)
    except ResolverBusy:
        raise LookupBusy(
            "the host name cannot be looked up now (temporarily unavailable): try again later"
        ) from None
    except TimeoutError:
        raise UnresolvableHost("the host name did not resolve in time") from None
    except (OSError, UnicodeError):
        raise UnresolvableHost("the host name does not resolve") from None
    addresses: list[Address] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnresolvableHost("the host name does not resolve")
    addresses = addresses[:MAX_ADDRESSES]
    for address in addresses:
        check_address(destination, address, policy)
    return addresses
