"""The SSRF guard: every refused class with its reason, the allow-list, names that resolve
inward (through the system resolver, with real getaddrinfo), and nothing refused that is public."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.config import ConfigError, load_settings
from gateway.webpush.destinations import (
    MAX_URL_OCTETS,
    DestinationPolicy,
    RefusedDestination,
    UnresolvableHost,
    check_url,
    parse_allowed,
    refusal,
    resolve,
)

STRICT = DestinationPolicy()
# The account the lookups are counted against (resolver.py).
ACCOUNT = "a-test"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://push.example.com/x", "the URL must use https"),
        ("ftp://push.example.com/x", "the URL must use https"),
        ("push.example.com/x", "the URL must use https"),
        ("https://user:pw@push.example.com/x", "the URL must not carry a user name or password"),
        ("https://user@push.example.com/x", "the URL must not carry a user name or password"),
        ("https://push.example.com/x#frag", "the URL must not have a fragment"),
        ("https:///x", "the URL has no host"),
        ("https://push.example.com:0/x", "the URL's port is not valid"),
        ("https://push.example.com:99999/x", "the URL is not valid"),
        ("https://push.example.com/a b", "the URL contains spaces or control characters"),
        ("https://push.example.com/\x00", "the URL contains spaces or control characters"),
        ("https://[::1/x", "the URL is not valid"),
        ("https://127.0.0.1/x", "the host is a loopback address"),
        ("https://127.1.2.3:8443/x", "the host is a loopback address"),
        ("https://[::1]/x", "the host is a loopback address"),
        ("https://10.0.0.1/x", "the host is a private address"),
        ("https://172.16.5.4/x", "the host is a private address"),
        ("https://192.168.1.1/x", "the host is a private address"),
        ("https://169.254.169.254/latest/meta-data", "the host is a link-local address"),
        ("https://100.64.0.1/x", "the host is a shared (carrier-grade NAT) address"),
        ("https://0.0.0.0/x", "the host is an unspecified address"),
        ("https://[::]/x", "the host is an unspecified address"),
        ("https://224.0.0.1/x", "the host is a multicast address"),
        ("https://[ff02::1]/x", "the host is a multicast address"),
        ("https://240.0.0.1/x", "the host is a reserved address"),
        ("https://255.255.255.255/x", "the host is a reserved address"),
        ("https://192.0.2.10/x", "the host is a documentation address"),
        ("https://[2001:db8::1]/x", "the host is a documentation address"),
        ("https://198.18.0.1/x", "the host is a benchmarking address"),
        ("https://[fd00::1]/x", "the host is a unique local address"),
        ("https://[fc00::1]/x", "the host is a unique local address"),
        ("https://[fe80::1]/x", "the host is a link-local address"),
        ("https://[fec0::1]/x", "the host is a site-local address"),
        ("https://[::ffff:127.0.0.1]/x", "the host is a loopback address (IPv4 inside IPv6)"),
        ("https://[::ffff:10.1.2.3]/x", "the host is a private address (IPv4 inside IPv6)"),
        ("https://[64:ff9b::a9fe:a9fe]/x", "the host is a link-local address (IPv4 inside IPv6)"),
        ("https://[2002:7f00:1::]/x", "the host is a loopback address (IPv4 inside IPv6)"),
        ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x", "the host is a reserved address"),
    ],
)
def test_check_url_refuses(url: str, reason: str) -> None:
    with pytest.raises(RefusedDestination) as refused:
        check_url(url, STRICT)
    assert refused.value.reason == reason


def test_long_url_refused() -> None:
    url = "https://push.example.com/" + "a" * MAX_URL_OCTETS
    with pytest.raises(RefusedDestination, match=f"longer than {MAX_URL_OCTETS}"):
        check_url(url, STRICT)


@pytest.mark.parametrize(
    "url",
    [
        "https://push.example.com/x",
        "https://fcm.googleapis.com/fcm/send/abc?x=1",
        "https://PUSH.Example.COM:443/x",
        "https://8.8.8.8/x",
        "https://[2606:4700:4700::1111]/x",
        "https://[::ffff:8.8.8.8]/x",
        "https://[64:ff9b::808:808]/x",
    ],
)
def test_check_url_admits_public(url: str) -> None:
    check_url(url, STRICT)


@pytest.mark.parametrize(
    "url", ["https://1.1.1.1:22/x", "https://push.example.com:8443/x", "https://[2606:4700::1]:25/"]
)
def test_only_port_443_by_default(url: str) -> None:
    """A public host's other ports are no push service: refused, the reason naming the port."""
    with pytest.raises(RefusedDestination) as refused:
        check_url(url, STRICT)
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert refused.value.reason == f"the URL's port must be 443 (port {port} is not allowed)"


async def test_other_ports_when_the_operator_allows_the_destination() -> None:
    """An allow-listed name or network, or http allowed (tests), admits any port; a name is
    checked again after its lookup when a network might admit its addresses."""
    check_url("https://relay.internal:8443/x", DestinationPolicy(allowed=("relay.internal",)))
    check_url("https://10.1.2.3:8443/x", DestinationPolicy(allowed=parse_allowed("10.0.0.0/8")))
    check_url("https://push.example.com:8443/x", DestinationPolicy(allow_http=True))
    networks = DestinationPolicy(allowed=parse_allowed("10.0.0.0/8"))
    check_url("https://push.example.com:8443/x", networks)
    with pytest.raises(RefusedDestination, match=r"port must be 443 \(port 8443"):
        await resolve("https://[2606:4700:4700::1111]:8443/x", networks, ACCOUNT)
    assert await resolve(
        "https://localhost:8443/x", DestinationPolicy(allowed=parse_allowed("127.0.0.0/8")), ACCOUNT
    )


def test_http_only_when_allowed() -> None:
    check_url("http://push.example.com/x", DestinationPolicy(allow_http=True))
    with pytest.raises(RefusedDestination, match="https"):
        check_url("ftp://push.example.com/x", DestinationPolicy(allow_http=True))


def test_host_name_is_lowered_and_idna() -> None:
    destination = check_url("https://BÜCHER.example/x", STRICT)
    assert destination.host == "xn--bcher-kva.example"
    assert destination.port == 443


def test_every_address_class_of_ipaddress_that_is_not_global_is_refused() -> None:
    """Whatever the table misses, ipaddress's is_global still refuses (the fallback)."""
    assert refusal(ipaddress.ip_address("192.0.0.8")) is not None
    assert refusal(ipaddress.ip_address("8.8.4.4")) is None
    assert refusal(ipaddress.ip_address("2a00:1450:4001:80b::200a")) is None


def test_allow_list_admits_networks_and_names() -> None:
    policy = DestinationPolicy(allowed=parse_allowed("10.20.0.0/16, fd12::/16 ,relay.internal"))
    check_url("https://10.20.3.4/x", policy)
    check_url("https://[fd12::5]/x", policy)
    with pytest.raises(RefusedDestination, match="private"):
        check_url("https://10.21.0.1/x", policy)
    with pytest.raises(RefusedDestination, match="loopback"):
        check_url("https://[::1]/x", policy)


async def test_allowed_name_passes_whatever_it_resolves_to() -> None:
    policy = DestinationPolicy(allowed=parse_allowed("localhost"))
    addresses = await resolve("https://localhost:8443/x", policy, ACCOUNT)
    assert addresses and all(a.is_loopback for a in addresses)


def test_parse_allowed_names_bad_entries() -> None:
    assert parse_allowed("") == ()
    assert parse_allowed("10.0.0.1") == (ipaddress.ip_network("10.0.0.1/32"),)
    assert parse_allowed("Relay.Internal.") == ("relay.internal",)
    with pytest.raises(ValueError, match="neither a CIDR"):
        parse_allowed("10.0.0.0/33")
    with pytest.raises(ValueError, match="neither a CIDR"):
        parse_allowed("https://relay")


def test_setting_is_checked_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_IMAP_URL", "imap://127.0.0.1:143")
    monkeypatch.setenv("GATEWAY_REDIS_URL", "redis://127.0.0.1:6379")
    monkeypatch.setenv("GATEWAY_WEBPUSH_ALLOWED_DESTINATIONS", "10.0.0.0/8,bad name")
    with pytest.raises(ConfigError, match="GATEWAY_WEBPUSH_ALLOWED_DESTINATIONS"):
        load_settings()
    monkeypatch.setenv("GATEWAY_WEBPUSH_ALLOWED_DESTINATIONS", "10.0.0.0/8, relay.internal")
    monkeypatch.setenv("GATEWAY_WEBPUSH_ALLOW_HTTP", "true")
    policy = DestinationPolicy.from_settings(load_settings())
    assert policy.allow_http
    assert policy.allowed == (ipaddress.ip_network("10.0.0.0/8"), "relay.internal")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        # Names the system resolver (/etc/hosts) answers with loopback.
        ("https://localhost/x", "the host resolves to a loopback address"),
        ("https://LOCALHOST./x", "the host resolves to a loopback address"),
        # Forms getaddrinfo accepts as IPv4 that ipaddress does not: checked after resolution.
        ("https://127.1/x", "the host resolves to a loopback address"),
        ("https://2130706433/x", "the host resolves to a loopback address"),
        ("https://0x7f.1/x", "the host resolves to a loopback address"),
        # httpx (like the URL standard) refuses what looks like IPv4 with a leading zero.
        ("https://012.0.0.1/x", "the URL's host name is not valid"),
        # IP literals are refused before any lookup.
        ("https://[::ffff:127.0.0.1]/x", "the host is a loopback address (IPv4 inside IPv6)"),
        ("http://127.0.0.1/x", "the URL must use https"),
    ],
)
async def test_resolve_refuses_inward_names(url: str, reason: str) -> None:
    with pytest.raises(RefusedDestination) as refused:
        await resolve(url, STRICT, ACCOUNT)
    assert refused.value.reason == reason


async def test_unresolvable_name() -> None:
    # RFC 6761 6.4: .invalid never resolves.
    with pytest.raises(UnresolvableHost, match="does not resolve"):
        await resolve("https://push.invalid/x", STRICT, ACCOUNT)


async def test_public_literal_resolves_to_itself() -> None:
    assert await resolve("https://[2606:4700:4700::1111]/x", STRICT, ACCOUNT) == [
        ipaddress.ip_address("2606:4700:4700::1111")
    ]


def test_host_is_named_as_the_http_client_names_it() -> None:
    """IDNA 2008 as httpx encodes (IDNA 2003 would say strasse), lower case, no final dot."""
    assert check_url("https://straße.example/x", STRICT).host == "xn--strae-oqa.example"
    assert check_url("https://Push.Example.NET./x", STRICT).host == "push.example.net"
