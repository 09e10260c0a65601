"""The HTTP client that POSTs pushes, pinned to the addresses destinations.py checked.

Checking a URL's host and then letting the HTTP library look it up again would leave a gap:
a name can answer a public address to the check and 127.0.0.1 to the connect (DNS
rebinding). So the client resolves and checks the host itself, then connects to exactly those
addresses through a network backend that refuses any other; the URL keeps its name, so the
Host header, TLS SNI and the certificate check all stay on the name, and connections are
pooled per name. Redirects are never followed (a 3xx is just a reply), environment proxies
are ignored (a proxy would connect on its own terms), time is bounded per phase and overall,
and at most MAX_RESPONSE_OCTETS of a response are read, then dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import certifi
import httpcore
import httpx

from gateway.webpush.destinations import (
    RESOLVE_TIMEOUT_SECONDS,
    Address,
    Destination,
    DestinationPolicy,
    LookupBusy,
    RefusedDestination,
    UnresolvableHost,
    check_url,
    normal_host,
    resolve_destination,
)

if TYPE_CHECKING:
    from gateway.config import Settings

# What is read of a response (push services answer with small JSON errors at most); the rest
# is never read: the connection is closed instead.
MAX_RESPONSE_OCTETS = 4096
# A Retry-After further away than this is taken as this: a subscription is not silenced for
# days by one header.
MAX_RETRY_AFTER_SECONDS = 3600.0
# Connections of one process, to all push services together, and those kept open between
# pushes (FCM, Mozilla and Apple take many pushes each).
MAX_CONNECTIONS = 100
MAX_KEEPALIVE = 20
KEEPALIVE_SECONDS = 30.0

# The addresses checked for the request being sent in this task: (host, port) -> addresses.
_PINNED: contextvars.ContextVar[tuple[str, int, tuple[Address, ...]] | None] = (
    contextvars.ContextVar("webpush_pinned", default=None)
)


def longest_send_seconds(timeout_seconds: float) -> float:
    """The most one :meth:`PushClient.post` takes with ``timeout_seconds`` per phase: the
    lookup, then the connect and the exchange within twice the timeout."""
    return RESOLVE_TIMEOUT_SECONDS + 2 * timeout_seconds


class PushUnreachable(Exception):
    """The push service could not be reached or did not answer in time; worth a retry. The
    message names the failure's kind, never the URL (push URLs are capabilities)."""


class LookupsBusy(PushUnreachable):
    """The push lookups' threads (or the account's share) were all busy: nothing was asked;
    worth a retry soon (webpush/resolver.py)."""


@dataclass(frozen=True)
class Reply:
    """What a push service answered: its status and, when given, how long to wait."""

    status: int
    retry_after: float | None = None


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects a request only to the addresses checked for its host in this task."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pinned = _PINNED.get()
        if pinned is None or (pinned[0], pinned[1]) != (normal_host(host), port):
            raise httpcore.ConnectError("no checked address for this host")
        failure: Exception = httpcore.ConnectError("no address")
        for address in pinned[2]:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("push requests never use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a pool whose connections go through :class:`PinnedBackend`."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_KEEPALIVE,
            keepalive_expiry=KEEPALIVE_SECONDS,
            network_backend=PinnedBackend(),
        )


class PushClient:
    """One per process: POSTs pushes to checked destinations over a pinned, pooled client."""

    def __init__(self, timeout: float, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._timeout = timeout
        context = ssl_context or ssl.create_default_context(cafile=certifi.where())
        self._client = httpx.AsyncClient(
            transport=_PinnedTransport(context),
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,
        )

    @property
    def longest_send_seconds(self) -> float:
        return longest_send_seconds(self._timeout)

    @classmethod
    def from_settings(cls, settings: Settings) -> PushClient:
        return cls(settings.webpush_timeout_seconds)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        policy: DestinationPolicy,
        account_id: str,
    ) -> Reply:
        """POST ``body`` to ``url`` after checking it (its lookup counted against
        ``account_id``); RefusedDestination if the policy refuses it (now: the name may point
        elsewhere than at create), PushUnreachable on failure."""
        destination = check_url(url, policy)
        try:
            addresses = await resolve_destination(destination, policy, account_id)
        except LookupBusy as exc:
            raise LookupsBusy(exc.reason) from None
        except UnresolvableHost as exc:
            raise PushUnreachable(exc.reason) from None
        return await self.post_to(destination, addresses, url, body, headers)

    async def post_to(
        self,
        destination: Destination,
        addresses: list[Address],
        url: str,
        body: bytes,
        headers: Mapping[str, str],
    ) -> Reply:
        """POST to ``url`` connecting only to ``addresses``, which the caller has checked."""
        if not addresses:
            raise RefusedDestination("the host has no checked address")
        token = _PINNED.set((destination.host, destination.port, tuple(addresses)))
        try:
            # Connect, then send and answer, each within the timeout: a push service that
            # trickles its answer is cut like one that never answers.
            async with asyncio.timeout(2 * self._timeout):
                return await self._exchange(url, body, headers)
        except TimeoutError:
            raise PushUnreachable("the push service did not answer in time") from None
        except httpx.TimeoutException:
            raise PushUnreachable("the push service did not answer in time") from None
        except httpx.HTTPError as exc:
            raise PushUnreachable(f"the push request failed ({type(exc).__name__})") from None
        finally:
            _PINNED.reset(token)

    async def _exchange(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        request = self._client.build_request("POST", url, content=body, headers=dict(headers))
        response = await self._client.send(request, stream=True)
        try:
            read = 0
            # Raw octets, not decoded: a compressed answer is never inflated.
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= MAX_RESPONSE_OCTETS:
                    break
        finally:
            await response.aclose()
        return Reply(response.status_code, retry_after(response.headers.get("retry-after")))


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """RFC 9110 10.2.3: Retry-After as delta-seconds or an HTTP-date, in seconds from now,
    at most MAX_RETRY_AFTER_SECONDS; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    seconds = moment.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
