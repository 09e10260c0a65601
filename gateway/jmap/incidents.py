"""Every serverFail and serverPartialFail is logged with its cause and an incident id.

A client that gets one of these can only report it; the operator must then find out what
happened. So each one, a method error or a SetError of one object in a /set or /copy
response, gets an incident id that goes both into the log line, with the cause, and into
the description the client sees, which never holds the cause itself (it may name internals).
The dispatcher calls these for every response, so no handler has to remember.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from gateway.jmap.errors import MethodError, MethodErrorType, SetError

logger = logging.getLogger(__name__)

# RFC 8620 3.6.2: the method errors that mean the server failed, fully or in part.
FAILURES: frozenset[MethodErrorType] = frozenset({"serverFail", "serverPartialFail"})
# RFC 8620 5.3, 5.4 and 6.3: where /set, /copy and Blob/copy report objects that failed.
SET_ERROR_MAPS = ("notCreated", "notUpdated", "notDestroyed", "notCopied")


def new_incident() -> str:
    """A short random id to quote in a log line and a response alike."""
    return secrets.token_hex(6)


def unexpected(method: str, call_id: str, exc: BaseException) -> MethodError:
    """A bug or an exception nobody mapped: serverFail, the traceback in the log only."""
    incident = new_incident()
    logger.error(
        "serverFail incident=%s method=%r callId=%r cause=unexpected %s",
        incident,
        method,
        call_id,
        type(exc).__name__,
        exc_info=exc,
    )
    return MethodError("serverFail", f"Internal error; incident {incident}")


def method_failure(
    method: str, call_id: str, error: MethodError, cause: BaseException | None
) -> MethodError:
    """``error`` as the client gets it: a failure logged with its cause and incident id.

    Other errors are the client's business (bad arguments, a changed state) and pass as
    they are.
    """
    if error.type not in FAILURES:
        return error
    incident = new_incident()
    logger.error(
        "%s incident=%s method=%r callId=%r description=%r cause=%s",
        error.type,
        incident,
        method,
        call_id,
        error.description,
        _describe(cause),
        exc_info=cause,
    )
    return MethodError(error.type, _quoted(error.description, incident), error.extra)


def settle_set_errors(method: str, call_id: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The response arguments with each SetError as its JSON object; failures logged.

    Handlers may file SetError objects (which carry a ``cause``) or their dicts; both are
    logged when they are serverFail, and get the incident id in their description.
    """
    settled = dict(arguments)
    for name in SET_ERROR_MAPS:
        errors = arguments.get(name)
        if isinstance(errors, Mapping):
            settled[name] = {
                key: _settled(method, call_id, name, key, error) for key, error in errors.items()
            }
    return settled


def _settled(method: str, call_id: str, where: str, key: str, error: Any) -> Any:
    if isinstance(error, SetError):
        payload, cause = error.to_dict(), error.cause
    elif isinstance(error, dict):
        payload, cause = error, None
    else:
        return error
    if payload.get("type") not in FAILURES:
        return payload
    incident = new_incident()
    description = payload.get("description")
    logger.error(
        "SetError %s incident=%s method=%r callId=%r %s=%r description=%r cause=%s",
        payload["type"],
        incident,
        method,
        call_id,
        where,
        key,
        description,
        _describe(cause),
        exc_info=cause if isinstance(cause, BaseException) else None,
    )
    return {**payload, "description": _quoted(description, incident)}


def _quoted(description: str | None, incident: str) -> str:
    return f"{description} (incident {incident})" if description else f"Incident {incident}"


def _describe(cause: BaseException | str | None) -> str:
    if cause is None:
        return "none recorded"
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    return cause
