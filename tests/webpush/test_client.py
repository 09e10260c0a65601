"""The pinned push client against real local receivers (plain and TLS with a local CA): it
connects only to the checked address while TLS checks the name, follows no redirect, reads a
bounded answer, bounds time, parses Retry-After; and refuses every inward URL before any
connection (the receivers count what reached them)."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpcore
import httpx
import pytest
import respx
import trustme

from gateway.webpush.client import (
    _PINNED,
    MAX_RETRY_AFTER_SECONDS,
    PinnedBackend,
    PushClient,
    PushUnreachable,
    Reply,
    retry_after,
)
from gateway.webpush.destinations import DestinationPolicy, RefusedDestination, parse_url
from tests.webpush.receiver import Answer, receiver

LOOPBACK = [ipaddress.ip_address("127.0.0.1")]
HTTP = DestinationPolicy(allow_http=True)
# The account the lookups are counted against (resolver.py).
ACCOUNT = "a-test"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture
async def client(ca: trustme.CA) -> Iterator[PushClient]:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    push = PushClient(5.0, ssl_context=context)
    yield push
    await push.aclose()


async def test_connects_to_the_checked_address_with_the_names_tls(
    ca: trustme.CA, client: PushClient
) -> None:
    """push.invalid resolves nowhere (RFC 6761): the request can only have reached the receiver
    through the pinned address, and TLS verified the certificate for the name."""
    async with receiver(tls=server_context(ca, "push.invalid")) as push:
        url = push.url(name="push.invalid", scheme="https")
        reply = await client.post_to(parse_url(url), LOOPBACK, url, b"hello", {"TTL": "60"})
    assert reply == Reply(201)
    [request] = push.received
    assert request.sni == "push.invalid"
    assert request.headers["host"] == f"push.invalid:{push.port}"
    assert request.peer == "127.0.0.1"
    assert (request.method, request.target, request.body) == ("POST", "/push/abc", b"hello")
    assert request.headers["ttl"] == "60"


async def test_certificate_for_another_name_is_refused(ca: trustme.CA, client: PushClient) -> None:
    async with receiver(tls=server_context(ca, "other.invalid")) as push:
        url = push.url(name="push.invalid", scheme="https")
        with pytest.raises(PushUnreachable, match="ConnectError"):
            await client.post_to(parse_url(url), LOOPBACK, url, b"x", {})
    assert push.received == []


async def test_allow_listed_name_goes_through(ca: trustme.CA, client: PushClient) -> None:
    async with receiver(tls=server_context(ca, "localhost")) as push:
        url = push.url(name="localhost", scheme="https")
        assert await client.post(
            url, b"x", {}, DestinationPolicy(allowed=("localhost",)), ACCOUNT
        ) == Reply(201)
        with pytest.raises(RefusedDestination, match="port must be 443"):
            await client.post(url, b"x", {}, DestinationPolicy(), ACCOUNT)
    assert len(push.received) == 1


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/p", "the URL must use https"),
        ("https://127.0.0.1:{port}/p", "the host is a loopback address"),
        ("https://[::1]:{port}/p", "the host is a loopback address"),
        ("https://[::ffff:127.0.0.1]:{port}/p", "the host is a loopback address (IPv4 inside"),
        ("https://localhost/p", "the host resolves to a loopback address"),
        ("https://localhost:{port}/p", "the URL's port must be 443 (port"),
        ("https://10.0.0.1:{port}/p", "the host is a private address"),
        ("https://169.254.169.254/latest/meta-data/", "the host is a link-local address"),
        ("https://[fd00::1]:{port}/p", "the host is a unique local address"),
        ("https://user:pw@127.0.0.1:{port}/p", "the URL must not carry a user name"),
    ],
)
async def test_refused_before_any_connection(
    ca: trustme.CA, client: PushClient, url: str, reason: str
) -> None:
    async with receiver(tls=server_context(ca, "localhost", "127.0.0.1")) as push:
        with pytest.raises(RefusedDestination) as refused:
            await client.post(url.format(port=push.port), b"x", {}, DestinationPolicy(), ACCOUNT)
    assert refused.value.reason.startswith(reason)
    assert push.received == []


async def test_redirect_is_a_reply_and_never_followed(client: PushClient) -> None:
    async with receiver() as elsewhere:
        target = elsewhere.url(scheme="http")
        async with receiver(lambda _: Answer(302, {"location": target})) as push:
            reply = await client.post(
                push.url(scheme="http"), b"x", {}, _http_to_loopback(), ACCOUNT
            )
    assert reply.status == 302
    assert len(push.received) == 1
    assert elsewhere.received == []


def _http_to_loopback() -> DestinationPolicy:
    """Plain http to 127.0.0.1, as an operator's test setup would allow it."""
    return DestinationPolicy(allow_http=True, allowed=(ipaddress.ip_network("127.0.0.1/32"),))


async def test_answer_is_read_only_up_to_the_bound(client: PushClient) -> None:
    """An answer that never ends: reading it whole would end in a timeout, not a reply."""
    async with receiver(lambda _: Answer(200, endless=True)) as push:
        reply = await client.post(push.url(scheme="http"), b"x", {}, _http_to_loopback(), ACCOUNT)
    assert reply == Reply(200)


async def test_silent_service_times_out() -> None:
    push_client = PushClient(0.3)
    try:
        async with receiver(lambda _: Answer(silent=True)) as push:
            with pytest.raises(PushUnreachable, match="in time"):
                await push_client.post(
                    push.url(scheme="http"), b"x", {}, _http_to_loopback(), ACCOUNT
                )
    finally:
        await push_client.aclose()


async def test_trickling_service_is_cut_overall() -> None:
    """Each octet arrives within the read timeout, so only the overall bound can end it."""
    push_client = PushClient(0.5)
    try:
        async with receiver(lambda _: Answer(trickle=0.1)) as push:
            with pytest.raises(PushUnreachable, match="in time"):
                await push_client.post(
                    push.url(scheme="http"), b"x", {}, _http_to_loopback(), ACCOUNT
                )
    finally:
        await push_client.aclose()


async def test_closed_port_is_unreachable(client: PushClient) -> None:
    async with receiver() as push:
        url = push.url(scheme="http")
    with pytest.raises(PushUnreachable, match="ConnectError"):
        await client.post(url, b"x", {}, _http_to_loopback(), ACCOUNT)


async def test_unresolvable_name_is_unreachable_not_refused(client: PushClient) -> None:
    with pytest.raises(PushUnreachable, match="does not resolve"):
        await client.post("https://push.invalid/x", b"x", {}, DestinationPolicy(), ACCOUNT)


async def test_retry_after_from_the_service(client: PushClient) -> None:
    answers = iter(
        [
            Answer(429, {"retry-after": "120"}),
            Answer(503, {"retry-after": "999999"}),
            Answer(503, {"retry-after": "soon"}),
        ]
    )
    async with receiver(lambda _: next(answers)) as push:
        url, policy = push.url(scheme="http"), _http_to_loopback()
        assert await client.post(url, b"x", {}, policy, ACCOUNT) == Reply(429, 120.0)
        assert await client.post(url, b"x", {}, policy, ACCOUNT) == Reply(
            503, MAX_RETRY_AFTER_SECONDS
        )
        assert await client.post(url, b"x", {}, policy, ACCOUNT) == Reply(503, None)


def test_retry_after_forms() -> None:
    now = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert retry_after(later, now=now.timestamp()) == 90.0
    assert retry_after(earlier, now=now.timestamp()) == 0.0
    assert retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now=now.timestamp()) == 0.0
    assert retry_after(" 30 ") == 30.0
    assert retry_after("0") == 0.0
    assert retry_after("9" * 400) == MAX_RETRY_AFTER_SECONDS
    far = format_datetime(now + timedelta(days=3), usegmt=True)
    assert retry_after(far, now=now.timestamp()) == MAX_RETRY_AFTER_SECONDS
    for bad in (None, "", "-5", "1.5", "soon", "Sun, 99 Nov 1994 08:49:37 GMT"):
        assert retry_after(bad) is None


async def test_environment_proxies_are_ignored(
    client: PushClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy would connect to the name on its own terms, around the pinning."""
    async with receiver() as push:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(name, "http://127.0.0.1:9")
        assert await client.post(
            push.url(scheme="http"), b"x", {}, _http_to_loopback(), ACCOUNT
        ) == Reply(201)


async def test_respx_sees_the_request_by_name(client: PushClient) -> None:
    """Delivery tests mock push services with respx: the pinned transport stays mockable, the
    URL keeps its name, and the headers and body arrive as given."""
    policy = DestinationPolicy(allowed=("localhost",))
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post("https://localhost/push/abc").mock(
            return_value=httpx.Response(201, headers={"retry-after": "7"})
        )
        reply = await client.post(
            "https://localhost/push/abc",
            b"\x00body",
            {"TTL": "60", "Urgency": "normal", "Content-Encoding": "aes128gcm"},
            policy,
            ACCOUNT,
        )
    assert reply == Reply(201, 7.0)
    sent = route.calls.last.request
    assert sent.content == b"\x00body"
    assert (sent.headers["ttl"], sent.headers["urgency"]) == ("60", "normal")
    assert sent.headers["content-encoding"] == "aes128gcm"


async def test_backend_connects_nowhere_without_a_checked_address() -> None:
    """The pool's only way out: without a pin for this very host and port, no connection."""
    async with receiver() as push:
        backend = PinnedBackend()
        with pytest.raises(httpcore.ConnectError, match="no checked address"):
            await backend.connect_tcp("127.0.0.1", push.port)
        token = _PINNED.set(("push.example.net", push.port, tuple(LOOPBACK)))
        try:
            with pytest.raises(httpcore.ConnectError, match="no checked address"):
                await backend.connect_tcp("127.0.0.1", push.port)
            with pytest.raises(httpcore.ConnectError, match="no checked address"):
                await backend.connect_tcp("push.example.net", push.port + 1)
            stream = await backend.connect_tcp("PUSH.example.net.", push.port)
            await stream.aclose()
        finally:
            _PINNED.reset(token)
    assert push.received == []


async def test_ipv6_literal_allowed_by_network(client: PushClient) -> None:
    try:
        async with receiver(host="::1") as push:
            policy = DestinationPolicy(allow_http=True, allowed=(ipaddress.ip_network("::1/128"),))
            reply = await client.post(f"http://[::1]:{push.port}/p", b"x", {}, policy, ACCOUNT)
    except OSError as exc:  # a host without IPv6 loopback
        pytest.skip(f"no IPv6 loopback: {exc}")
    assert reply == Reply(201)
    assert [r.peer for r in push.received] == ["::1"]
