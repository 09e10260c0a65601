"""``GET /jmap/eventsource/`` (RFC 8620 7.3): who may open a stream; the stream is push's.

A raw ASGI endpoint (no StreamingResponse: each connection holds only what
:func:`gateway.push.eventsource.event_source` keeps). The caller authenticates as for the API,
with the ``Authorization`` header, or, from a browser's EventSource (which cannot set headers),
with a push token in the ``access_token`` query parameter. A failure before the stream starts
is the usual problem document.
"""

from __future__ import annotations

import logging

from starlette.datastructures import State
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from gateway.auth import Principal, Unauthenticated
from gateway.http import ProblemResponse, authenticate
from gateway.jmap.errors import problem
from gateway.origin import client_origin
from gateway.origin_check import ambient_credentials_refused, site_origin
from gateway.problems import DESCRIBED, HttpProblem
from gateway.push.eventsource import Recheck, event_source
from gateway.push.tokens import QUERY_PARAMETER, verify_token
from gateway.services import Services

log = logging.getLogger(__name__)


class EventSourceEndpoint:
    """The ASGI app of the event-source route (reached through :func:`gateway.app.entry`,
    outside FastAPI's layers)."""

    def __init__(self, state: State) -> None:
        # The app's state, whose services exist once the lifespan started them.
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        svc: Services = self._state.services
        try:
            await self._serve(request, svc, send)
        except DESCRIBED as exc:
            # Raised before the stream started: event_source sends nothing before its checks.
            await ProblemResponse.of(exc)(scope, receive, send)

    async def _serve(self, request: Request, svc: Services, send: Send) -> None:
        token = request.query_params.get(QUERY_PARAMETER)
        if token is not None and "authorization" not in request.headers:
            pushed = await verify_token(svc, token)
            request.scope.setdefault("state", {})["account_id"] = pushed.account_id
            await event_source(
                request.scope,
                request.receive,
                send,
                svc,
                pushed.account_id,
                None,
                until=pushed.stream_until,
            )
            return
        if ambient_credentials_refused(request.headers, svc.settings, site_origin(svc.settings)):
            raise HttpProblem(
                problem(
                    403,
                    "Forbidden",
                    "A page of another origin may not open this stream with Basic "
                    "credentials; use a push token (POST /jmap/push/token).",
                )
            )
        principal = await authenticate(request)
        await event_source(
            request.scope,
            request.receive,
            send,
            svc,
            principal.account_id,
            principal,
            recheck=_recheck(request, svc, principal),
            recheck_seconds=svc.settings.push_recheck_seconds,
        )


def _recheck(request: Request, svc: Services, principal: Principal) -> Recheck:
    """Whether the stream's header credentials still work (the authenticator's cache answers
    most rechecks without asking the upstream)."""
    authenticator = svc.authenticator
    proxies = authenticator.proxies
    origin = client_origin(request.client, request.headers.getlist(proxies.header), proxies)

    async def still_valid() -> bool:
        try:
            await authenticator.recheck(principal.login.credentials, origin)
        except Unauthenticated:
            return False
        except Exception:
            # Nobody could tell (Redis holds the failed-login counts; anything else is
            # unexpected): the stream goes on and the next recheck asks again, as the
            # authenticator does when the upstream is down, and as a WebSocket's recheck does.
            # Raised here, it would reach the endpoint after the stream's headers were sent.
            log.warning("recheck of a stream's credentials failed to run", exc_info=True)
        return True

    return still_valid
