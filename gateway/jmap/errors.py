"""The closed set of JMAP errors, each converted to JSON in exactly one place.

Translators raise these; the dispatcher (method errors) and the HTTP layer (request
errors) turn them into responses. The types are closed sets that mypy knows, so a
misspelt type fails type checking, and one mypy cannot see (built from data) is refused
when the error is built: either way a typo never reaches a client as an unknown type,
which clients must treat as serverFail (RFC 8620 3.6.2).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar, Generic, Literal, TypeVar, get_args

REQUEST_ERROR_PREFIX = "urn:ietf:params:jmap:error:"

# Each closed set is a Literal, so mypy refuses a misspelt type where an error is built;
# the frozenset beside it is the same set at run time, for values mypy cannot see.

# RFC 8620 3.6.1: the request-level problem types.
RequestErrorType = Literal["unknownCapability", "notJSON", "notRequest", "limit"]
REQUEST_ERROR_TYPES: frozenset[str] = frozenset(get_args(RequestErrorType))

# RFC 8620 3.6.2 (any method), 5.1-5.6 (standard methods), 6.3 (Blob/copy).
MethodErrorType = Literal[
    "serverUnavailable",
    "serverFail",
    "serverPartialFail",
    "unknownMethod",
    "invalidArguments",
    "invalidResultReference",
    "forbidden",
    "accountNotFound",
    "accountNotSupportedByMethod",
    "accountReadOnly",
    "requestTooLarge",
    "cannotCalculateChanges",
    "stateMismatch",
    "anchorNotFound",
    "unsupportedSort",
    "unsupportedFilter",
    "tooManyChanges",
    "fromAccountNotFound",
    "fromAccountNotSupportedByMethod",
]
METHOD_ERROR_TYPES: frozenset[str] = frozenset(get_args(MethodErrorType))

# RFC 8620 5.3 and 5.4, RFC 8621 (Mailbox 2.5, Email 4.6 and 4.8, Identity 6.3,
# EmailSubmission 7.5).
SetErrorType = Literal[
    "forbidden",
    "overQuota",
    "tooLarge",
    "rateLimit",
    "notFound",
    "invalidPatch",
    "willDestroy",
    "invalidProperties",
    "singleton",
    "alreadyExists",
    "mailboxHasChild",
    "mailboxHasEmail",
    "blobNotFound",
    "tooManyKeywords",
    "tooManyMailboxes",
    "invalidEmail",
    "tooManyRecipients",
    "noRecipients",
    "invalidRecipients",
    "forbiddenMailFrom",
    "forbiddenFrom",
    "forbiddenToSend",
    "cannotUnsend",
    # Like the method error of the same name, for one object: the upstream failed to
    # make the change (RFC 8620 5.3 lets methods define further SetError types).
    "serverFail",
]
SET_ERROR_TYPES: frozenset[str] = frozenset(get_args(SetErrorType))

_Type = TypeVar("_Type", bound=str)


def problem(status: int, title: str, detail: str, type_: str = "about:blank") -> dict[str, Any]:
    """Build an RFC 7807 problem document for HTTP errors that are not JMAP types (401, 404, 503).

    Keeping it here gives every error body of the gateway the same shape.
    """
    return {"type": type_, "title": title, "status": status, "detail": detail}


class RequestError(Exception):
    """The whole request is rejected (RFC 8620 3.6.1); the HTTP layer sends `to_problem()`."""

    def __init__(
        self,
        type_: RequestErrorType,
        detail: str,
        *,
        limit: str | None = None,
        status: int = 400,
    ) -> None:
        if type_ not in REQUEST_ERROR_TYPES:
            raise ValueError(f"unknown request error type {type_!r}")
        # RFC 8620 3.6.1: a "limit" property MUST be present on the limit problem type.
        if (type_ == "limit") != (limit is not None):
            raise ValueError("limit is required for, and only for, the limit type")
        super().__init__(type_, detail)
        self.type = type_
        self.status = status
        self.detail = detail
        self.limit = limit

    @classmethod
    def limit_exceeded(cls, limit: str, detail: str) -> RequestError:
        """Reject a request that exceeds the named limit of the core capability."""
        return cls("limit", detail, limit=limit)

    def to_problem(self) -> dict[str, Any]:
        """Return the problem-details body (RFC 7807) for this error."""
        body: dict[str, Any] = {
            "type": REQUEST_ERROR_PREFIX + self.type,
            "status": self.status,
            "detail": self.detail,
        }
        if self.limit is not None:
            body["limit"] = self.limit
        return body


class _TypedError(Exception, Generic[_Type]):
    """Shared shape of method errors and SetErrors: a checked type, a description, extras."""

    TYPES: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        type_: _Type,
        description: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if type_ not in self.TYPES:
            raise ValueError(f"unknown {type(self).__name__} type {type_!r}")
        extra = dict(extra or {})
        if {"type", "description"} & extra.keys():
            raise ValueError("type and description are not extra properties")
        super().__init__(type_, description)
        self.type = type_
        self.description = description
        self.extra = extra

    def _payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"type": self.type}
        if self.description is not None:
            payload["description"] = self.description
        payload.update(self.extra)
        return payload


class MethodError(_TypedError[MethodErrorType]):
    """One method call fails (RFC 8620 3.6.2); the dispatcher emits an "error" response."""

    TYPES = METHOD_ERROR_TYPES

    @classmethod
    def invalid_arguments(
        cls, description: str, arguments: Sequence[str] | None = None
    ) -> MethodError:
        """Bad arguments; `arguments` names each bad one so clients need not parse prose."""
        extra = {"arguments": list(arguments)} if arguments is not None else None
        return cls("invalidArguments", description, extra)

    @classmethod
    def invalid_result_reference(cls, description: str) -> MethodError:
        """A "#name" argument could not be resolved (RFC 8620 3.7)."""
        return cls("invalidResultReference", description)

    def to_arguments(self) -> dict[str, Any]:
        """Return the arguments of the ["error", arguments, callId] response."""
        return self._payload()


class SetError(_TypedError[SetErrorType]):
    """One create/update/destroy of a /set or /copy fails (RFC 8620 5.3).

    It is an exception so per-record code can raise it; the /set loop catches it and
    files `to_dict()` under notCreated/notUpdated/notDestroyed.
    """

    TYPES = SET_ERROR_TYPES

    def __init__(
        self,
        type_: SetErrorType,
        description: str | None = None,
        extra: Mapping[str, Any] | None = None,
        *,
        cause: BaseException | str | None = None,
    ) -> None:
        super().__init__(type_, description, extra)
        # What went wrong, for the log only (gateway.jmap.incidents): never sent to the client.
        self.cause = cause

    @classmethod
    def invalid_properties(
        cls, properties: Collection[str], description: str | None = None
    ) -> SetError:
        """RFC 8620 5.3: SHOULD list all the invalid properties."""
        return cls("invalidProperties", description, {"properties": sorted(properties)})

    @classmethod
    def already_exists(cls, existing_id: str, description: str | None = None) -> SetError:
        """RFC 8620 5.4: an existingId property MUST be included."""
        return cls("alreadyExists", description, {"existingId": existing_id})

    @classmethod
    def blob_not_found(cls, blob_ids: Collection[str], description: str | None = None) -> SetError:
        """RFC 8621 4.6: the notFound property lists the missing blob ids."""
        return cls("blobNotFound", description, {"notFound": sorted(blob_ids)})

    def to_dict(self) -> dict[str, Any]:
        """Return the SetError object."""
        return self._payload()
