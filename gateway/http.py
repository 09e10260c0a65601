"""HTTP pieces every route shares: response classes, problem documents, authentication."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect, HTTPConnection
from starlette.types import Receive

from gateway import services
from gateway.auth import Principal, Throttled, Unauthenticated
from gateway.imap.errors import ImapError
from gateway.jmap.errors import RequestError, problem
from gateway.origin import client_origin
from gateway.problems import RETRY_AFTER_SECONDS, HttpProblem, describe

log = logging.getLogger(__name__)

T = TypeVar("T")

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"


class ProblemResponse(Response):
    """An RFC 7807 problem document."""

    media_type = PROBLEM_JSON

    def __init__(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(orjson.dumps(body), status_code=int(body["status"]), headers=headers)

    @classmethod
    def of(cls, exc: BaseException) -> ProblemResponse:
        """The response to a request that failed with ``exc`` (gateway.problems.describe)."""
        described = describe(exc)
        return cls(described.body, described.headers)


class JsonResponse(Response):
    media_type = JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def services_of(request: HTTPConnection) -> services.Services:
    return request.app.state.services  # type: ignore[no-any-return]


async def authenticate(request: HTTPConnection) -> Principal:
    """The caller, or a 401/429/503 problem. Sets the account id for the access log."""
    return await authenticate_with(services_of(request), request)


async def authenticate_with(svc: services.Services, request: HTTPConnection) -> Principal:
    """:func:`authenticate` for a request or WebSocket handshake outside the app's routes."""
    authenticator = svc.authenticator
    proxies = authenticator.proxies
    origin = client_origin(request.client, request.headers.getlist(proxies.header), proxies)
    try:
        principal = await authenticator.authenticate(request.headers.get("authorization"), origin)
    except Unauthenticated as exc:
        raise HttpProblem(
            problem(401, "Unauthorized", f"Authentication required: {exc}."),
            {"WWW-Authenticate": await authenticator.challenge(exc)},
        ) from None
    except Throttled as exc:
        # RFC 6585 4: the same answer whether or not the user exists.
        raise HttpProblem(
            problem(429, "Too Many Requests", str(exc)), {"Retry-After": str(exc.retry_after)}
        ) from None
    except ImapError:
        log.warning("upstream unavailable during authentication", exc_info=True)
        raise HttpProblem(
            problem(503, "Service Unavailable", "The mail server cannot be reached right now."),
            {"Retry-After": RETRY_AFTER_SECONDS},
        ) from None
    request.scope.setdefault("state", {})["account_id"] = principal.account_id
    return principal


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most ``limit`` octets, refusing a larger body before buffering it whole."""
    too_large = RequestError.limit_exceeded(
        "maxSizeRequest", f"The request is larger than {limit} octets."
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def while_connected(request: Request, work: Awaitable[T], on_gone: Callable[[], None]) -> T:
    """``work``'s result; if the client goes away first, ``on_gone`` is called, the work is
    cancelled and waited for (so its upstream connection is back in the pool, or dropped, before
    the caller lets its concurrency slot go) and ClientDisconnect is raised.

    Call it once the body has been read: the ASGI ``receive`` then has nothing to say but
    ``http.disconnect``.
    """
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if gone.done() and not task.done():
            on_gone()
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled():
        raise ClientDisconnect
    return task.result()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
