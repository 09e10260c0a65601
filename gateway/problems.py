"""Every request-level failure as one problem document (RFC 7807), whatever the transport.

A request fails as a whole when the client broke a rule of the request (RFC 8620 3.6.1), when
it may not be served (401, 429) or when the gateway cannot serve anyone (Redis or the upstream
is down, 503). :func:`describe` is the one place such a failure becomes a document, a status and
headers: HTTP sends them as an ``application/problem+json`` response, and a WebSocket (RFC 8887)
sends :meth:`Problem.request_error` of the same document. Method-level failures are not these:
the dispatcher answers them inside the Response (gateway.jmap.dispatch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from gateway.cache.locks import LockTimeout
from gateway.cache.store import STORE_UNAVAILABLE
from gateway.imap.errors import ImapError
from gateway.jmap.errors import RequestError, problem
from gateway.jmap.incidents import new_incident

log = logging.getLogger(__name__)

# Seconds a client is told to wait when a service the gateway needs is down.
RETRY_AFTER_SECONDS = "5"
# Seconds a client over its concurrency limit is told to wait: a request in flight is usually
# done by then.
RETRY_AFTER_LIMIT = "1"


@dataclass(frozen=True)
class Problem:
    """A problem document and the headers that go with it."""

    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> int:
        return int(self.body["status"])

    def request_error(self, request_id: str | None) -> dict[str, Any]:
        """RFC 8887 4.3.4: over a WebSocket, the same document typed "RequestError", with the
        requestId of the request it answers when that request had one."""
        tagged: dict[str, Any] = {"@type": "RequestError"}
        if request_id is not None:
            tagged["requestId"] = request_id
        return {**tagged, **self.body}


class HttpProblem(Exception):
    """A failure that already knows its problem document, raised by route helpers."""

    def __init__(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(body.get("detail"))
        self.body = body
        self.headers = headers


def too_many_concurrent(limit: str, detail: str) -> RequestError:
    """The account has ``limit`` requests of a kind in flight already.

    RFC 6585 4: 429 tells the client to retry later (:func:`describe` adds Retry-After).
    """
    return RequestError("limit", detail, limit=limit, status=429)


def describe(exc: BaseException) -> Problem:
    """The problem document of a request that failed with ``exc``.

    What the client sees never holds the cause of a failure of the gateway: that goes to the
    log, with an incident id the client can quote when it is unexpected.
    """
    if isinstance(exc, RequestError):
        headers = {"Retry-After": RETRY_AFTER_LIMIT} if exc.status == 429 else {}
        return Problem(exc.to_problem(), headers)
    if isinstance(exc, HttpProblem):
        return Problem(exc.body, dict(exc.headers or {}))
    if isinstance(exc, STORE_UNAVAILABLE):
        log.warning("Redis unavailable: %s", type(exc).__name__)
        return _unavailable("The gateway's state store is unavailable.")
    if isinstance(exc, (ImapError, LockTimeout)):
        log.warning("upstream unavailable: %s", type(exc).__name__)
        return _unavailable("The upstream mail server is unavailable.")
    incident = new_incident()
    log.error("unhandled error, incident %s", incident, exc_info=exc)
    return Problem(problem(500, "Internal Server Error", f"Unexpected error; incident {incident}."))


# The failures describe() knows by type; anything else is unexpected (500).
DESCRIBED: tuple[type[Exception], ...] = (
    RequestError,
    HttpProblem,
    *STORE_UNAVAILABLE,
    ImapError,
    LockTimeout,
)


def _unavailable(detail: str) -> Problem:
    body = problem(503, "Service Unavailable", detail)
    return Problem(body, {"Retry-After": RETRY_AFTER_SECONDS})
