"""One JMAP API request from body to Response object, whatever transport carried it.

HTTP (RFC 8620 3.1) and WebSocket (RFC 8887) differ in how a request arrives and how its
answer leaves, not in what happens in between: the account's concurrency slot, the parse
(beside the loop when the body is large), the Session state, the method calls and their
metrics. :func:`run_api` is that part; a transport authenticates the caller, reads the body,
hands both here and encodes what comes back. A request that fails as a whole raises
:class:`~gateway.jmap.errors.RequestError` (or another failure gateway.problems describes), which
the transport sends in its own form of the one problem document.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from gateway.auth import Principal
from gateway.cache.changes import CannotCalculateChanges
from gateway.cache.format_fence import NewerIndexFormat, OlderIndexFormat
from gateway.cache.limits import TooManyConcurrent
from gateway.cache.locks import LockTimeout
from gateway.cache.store import STORE_UNAVAILABLE
from gateway.env import INDEXING_RETRY_SECONDS, RETRY_HINT, RequestEnv
from gateway.imap.errors import CommandFailed, ImapError
from gateway.jmap.dispatch import process_request
from gateway.jmap.errors import MethodError
from gateway.jmap.protocol import JsonObject, Request, parse_request, request_from_document
from gateway.jmap.session import account_access
from gateway.offload import sized
from gateway.problems import too_many_concurrent
from gateway.services import Services

# Told the names of a request's method calls once it is parsed, e.g. for the access log.
CallsObserver = Callable[[list[str]], None]


async def run_api(
    svc: Services,
    principal: Principal,
    body: bytes,
    content_type: str | None,
    *,
    on_calls: CallsObserver | None = None,
) -> JsonObject:
    """The Response object (RFC 8620 3.4) to the request ``body`` of ``principal``.

    Read the body before calling: a body trickling in then holds no slot. A caller that
    cancels this (its client went away) gets the slot back once the work has stopped, so the
    upstream connection is back in the pool, or dropped, first.
    """
    # A body of megabytes takes tens of milliseconds to check and parse: beside the loop.
    parse = functools.partial(
        sized, len(body), parse_request, body, content_type, svc.limits, svc.capabilities.keys()
    )
    return await _admitted(svc, principal, parse, on_calls)


async def run_api_document(
    svc: Services,
    principal: Principal,
    document: object,
    size: int,
    *,
    on_calls: CallsObserver | None = None,
) -> JsonObject:
    """:func:`run_api` for a body already read as JSON (:func:`gateway.jmap.protocol.load_json`)
    of ``size`` octets, such as a WebSocket message (RFC 8887 4.3.2): the same limits, checks
    and processing."""
    parse = functools.partial(
        sized, size, request_from_document, document, svc.limits, svc.capabilities.keys()
    )
    return await _admitted(svc, principal, parse, on_calls)


async def _admitted(
    svc: Services,
    principal: Principal,
    parse: Callable[[], Awaitable[Request]],
    on_calls: CallsObserver | None,
) -> JsonObject:
    """``parse`` then run the request, in one of the account's concurrency slots."""
    try:
        async with svc.api_limiter.admit(principal.account_id):
            return await _run(svc, principal, await parse(), on_calls)
    except TooManyConcurrent:
        raise too_many_concurrent(
            "maxConcurrentRequests",
            f"More than {svc.limits.max_concurrent_requests} requests are in progress "
            "for this account.",
        ) from None


async def _run(
    svc: Services,
    principal: Principal,
    request: Request,
    on_calls: CallsObserver | None,
) -> JsonObject:
    if on_calls is not None:
        on_calls([call.name for call in request.method_calls])
    return await process_request(
        request,
        svc.registry,
        account_access(svc.accounts(principal)),
        RequestEnv(svc, principal),
        svc.session_state(principal),
        map_error=functools.partial(map_error, svc),
        on_call=svc.metrics.call,
    )


def map_error(svc: Services, exc: Exception) -> MethodError | None:
    """What lower-layer failures mean to a JMAP client (RFC 8620 3.6.2)."""
    if isinstance(exc, (NewerIndexFormat, OlderIndexFormat)):
        # A read met an index of another release's layout inside the freshness window (a
        # rolling upgrade): never an answer from it. An older one is caught up (reset) by the
        # retry; a replica of the newer release answers a newer one's.
        if isinstance(exc, OlderIndexFormat):
            svc.catch_up.distrust(exc.account_id)
        hint = RETRY_HINT.get()
        if hint is not None:
            hint.seconds = INDEXING_RETRY_SECONDS
        return MethodError("serverUnavailable", f"{exc} Try again later.")
    if isinstance(exc, CannotCalculateChanges):
        return MethodError("cannotCalculateChanges", str(exc))
    if isinstance(exc, CommandFailed):
        # The upstream refused something the gateway asked; its words may name mailboxes.
        return MethodError("serverFail", "The mail server refused the operation.")
    if isinstance(exc, (ImapError, LockTimeout, *STORE_UNAVAILABLE)):
        return MethodError(
            "serverUnavailable",
            "The mail server or the gateway's state store is unavailable; try again later.",
        )
    return None
