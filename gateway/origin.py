"""Where a request came from: the socket's peer, or what trusted proxies say in front of it.

The client's address is passed to the upstream (RFC 2971 ID, :mod:`gateway.imap.connection`)
and counts failed logins (:mod:`gateway.cache.throttle`), so it must not be something a client
can choose. A forwarding header is read only when the peer is one of the operator's proxies
(GATEWAY_TRUSTED_PROXIES), and only the one header the operator names: proxies append to the
header they write and pass the others through, so another header is the client's own words.
Entries are read from the right, skipping trusted proxies; the first other entry is the
client. An entry that is not an address (``unknown``, an obfuscated ``_name``) ends the walk
at the proxy that wrote it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.credentials import Origin

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_HEADERS = ("X-Forwarded-For", "Forwarded")
# At most this many entries of a forwarding header are looked at (a client can send many).
MAX_HOPS = 32
# "[v6]:port" or "v4:port", as some proxies write X-Forwarded-For and RFC 7239 6 writes node.
_WITH_PORT = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]{1,5}))?|([0-9.]+):([0-9]{1,5})")
# RFC 7239 4: forwarded-pair = token "=" value, value = token / quoted-string.
_PAIR = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)=("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')


@dataclass(frozen=True)
class ProxyPolicy:
    """The operator's proxies and the header they write."""

    trusted: tuple[IpNetwork, ...] = ()
    header: str = "X-Forwarded-For"

    @classmethod
    def parse(cls, proxies: str, header: str) -> ProxyPolicy:
        """``proxies``: addresses or CIDR networks separated by commas or spaces."""
        items = [item for item in re.split(r"[,\s]+", proxies) if item]
        networks = tuple(ipaddress.ip_network(item, strict=False) for item in items)
        return cls(networks, header)

    def trusts(self, address: IpAddress) -> bool:
        return any(address in network for network in self.trusted)


def client_origin(
    peer: tuple[str, int] | None, header_values: Sequence[str], policy: ProxyPolicy
) -> Origin | None:
    """The client's origin; ``header_values`` are every value of ``policy.header``."""
    if peer is None:
        return None
    address = _address(peer[0])
    if address is None:
        return None
    origin = Origin(str(address), peer[1])
    if not policy.trusts(address):
        return origin
    hops = (
        _forwarded_for(header_values)
        if policy.header.lower() == "forwarded"
        else _x_forwarded_for(header_values)
    )
    for hop in reversed(hops[-MAX_HOPS:]):
        if hop is None:
            break
        origin = hop
        if not policy.trusts(ipaddress.ip_address(hop.address)):
            break
    return origin


def _x_forwarded_for(values: Sequence[str]) -> list[Origin | None]:
    return [_node(item.strip()) for value in values for item in value.split(",")]


def _forwarded_for(values: Sequence[str]) -> list[Origin | None]:
    """RFC 7239 4: elements separated by commas, each of pairs separated by semicolons."""
    hops: list[Origin | None] = []
    for value in values:
        for element in _split_outside_quotes(value, ","):
            node = None
            for pair in _split_outside_quotes(element, ";"):
                match = _PAIR.fullmatch(pair)
                if match and match.group(1).lower() == "for":
                    raw = match.group(2)
                    node = _node(raw[1:-1] if raw.startswith('"') else raw)
            hops.append(node)
    return hops


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def _node(text: str) -> Origin | None:
    """An address with an optional port, or None for anything else."""
    address = _address(text)
    if address is not None:
        return Origin(str(address))
    match = _WITH_PORT.fullmatch(text)
    if not match:
        return None
    address = _address(match.group(1) or match.group(3))
    port = match.group(2) or match.group(4)
    if address is None or (port is not None and not 0 < int(port) < 65536):
        return None
    return Origin(str(address), int(port) if port else None)


def _address(text: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # an IPv4 client of a dual-stack socket
    return address
