"""The client's address: the socket's peer, or the operator's proxies' header, never a header
the client wrote itself (RFC 7239 examples)."""

from __future__ import annotations

import pytest

from gateway.config import Settings
from gateway.credentials import Origin
from gateway.origin import ProxyPolicy, client_origin

XFF = ProxyPolicy.parse("10.0.0.0/8, 192.0.2.10", "X-Forwarded-For")
FORWARDED = ProxyPolicy.parse("10.0.0.0/8 2001:db8:cafe::/48", "Forwarded")


def test_without_proxies_the_peer_is_the_client() -> None:
    nobody = ProxyPolicy.parse("", "X-Forwarded-For")
    spoofed = ["203.0.113.9"]
    assert client_origin(("198.51.100.7", 5123), spoofed, nobody) == Origin("198.51.100.7", 5123)
    # A client of a dual-stack socket appears IPv4-mapped; it is the IPv4 address.
    assert client_origin(("::ffff:198.51.100.7", 80), [], nobody) == Origin("198.51.100.7", 80)
    assert client_origin(None, spoofed, nobody) is None


def test_a_header_from_an_untrusted_peer_is_ignored() -> None:
    assert client_origin(("198.51.100.7", 5123), ["203.0.113.9"], XFF) == Origin(
        "198.51.100.7", 5123
    )


@pytest.mark.parametrize(
    ("values", "client"),
    [
        (["203.0.113.9"], Origin("203.0.113.9")),
        # Read from the right: the proxies' own hops are skipped, the client's claim is not read.
        (["1.2.3.4, 203.0.113.9, 10.1.1.1"], Origin("203.0.113.9")),
        (["1.2.3.4", "203.0.113.9, 192.0.2.10"], Origin("203.0.113.9")),
        (["203.0.113.9:4711"], Origin("203.0.113.9", 4711)),
        (["[2001:db8::1]:4711"], Origin("2001:db8::1", 4711)),
        # Nothing but proxies: the furthest of them.
        (["10.2.2.2, 10.3.3.3"], Origin("10.2.2.2")),
        # Not an address: the walk ends at the proxy that wrote it.
        (["203.0.113.9, unknown, 10.1.1.1"], Origin("10.1.1.1")),
        ([], Origin("10.0.0.5", 443)),
    ],
)
def test_x_forwarded_for_from_a_trusted_proxy(values: list[str], client: Origin) -> None:
    assert client_origin(("10.0.0.5", 443), values, XFF) == client


@pytest.mark.parametrize(
    ("values", "client"),
    [
        # RFC 7239 4 and 7.4 examples.
        (['for="_gazonk"'], Origin("10.0.0.5", 443)),
        (['For="[2001:db8:cafe::17]:4711"'], Origin("2001:db8:cafe::17", 4711)),
        (["for=192.0.2.60;proto=http;by=203.0.113.43"], Origin("192.0.2.60")),
        (["for=192.0.2.43, for=198.51.100.17"], Origin("198.51.100.17")),
        (["for=192.0.2.43, for=10.9.9.9;by=10.0.0.5"], Origin("192.0.2.43")),
        (['for=192.0.2.43;by="a,b", for=10.9.9.9'], Origin("192.0.2.43")),
        (["for=unknown"], Origin("10.0.0.5", 443)),
        (["proto=https"], Origin("10.0.0.5", 443)),
    ],
)
def test_forwarded_from_a_trusted_proxy(values: list[str], client: Origin) -> None:
    assert client_origin(("10.0.0.5", 443), values, FORWARDED) == client


def test_only_the_named_header_is_read() -> None:
    """Proxies append to the header they write and pass others through untouched."""
    assert client_origin(("10.0.0.5", 443), [], FORWARDED) == Origin("10.0.0.5", 443)


def test_settings_check_the_proxies_and_the_header() -> None:
    base = {"imap_url": "imap://127.0.0.1", "redis_url": "redis://127.0.0.1"}
    settings = Settings(**base, trusted_proxies="10.0.0.0/8", forwarded_header="forwarded")
    assert settings.forwarded_header == "Forwarded"
    assert settings.proxy_policy.trusts(settings.proxy_policy.trusted[0][1])
    for bad in ({"trusted_proxies": "10.0.0.0/33"}, {"forwarded_header": "X-Real-IP"}):
        with pytest.raises(ValueError):
            Settings(**base, **bad)  # type: ignore[arg-type]
