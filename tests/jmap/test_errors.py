"""Error objects: the closed sets of types and their JSON forms (RFC 7807, RFC 8620 3.6, 5.3)."""

from __future__ import annotations

import pytest

from gateway.jmap.errors import MethodError, RequestError, SetError, problem


def test_request_error_problem_document() -> None:
    error = RequestError("notRequest", "using is required.")
    assert error.to_problem() == {
        "type": "urn:ietf:params:jmap:error:notRequest",
        "status": 400,
        "detail": "using is required.",
    }


def test_limit_problem_names_the_limit() -> None:
    error = RequestError.limit_exceeded("maxCallsInRequest", "Too many calls.")
    assert error.to_problem() == {
        "type": "urn:ietf:params:jmap:error:limit",
        "status": 400,
        "detail": "Too many calls.",
        "limit": "maxCallsInRequest",
    }


@pytest.mark.parametrize(
    ("type_", "limit"), [("limit", None), ("notJSON", "maxSizeRequest"), ("notJson", None)]
)
def test_request_error_shape_is_enforced(type_: str, limit: str | None) -> None:
    with pytest.raises(ValueError):
        RequestError(type_, "detail", limit=limit)


def test_plain_problem() -> None:
    assert problem(401, "Unauthorized", "Log in first.") == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "Log in first.",
    }


def test_method_error_arguments() -> None:
    assert MethodError("accountNotFound").to_arguments() == {"type": "accountNotFound"}
    error = MethodError.invalid_arguments("ids: must be an array", arguments=["ids"])
    assert error.to_arguments() == {
        "type": "invalidArguments",
        "description": "ids: must be an array",
        "arguments": ["ids"],
    }


@pytest.mark.parametrize("type_", ["invalidArgument", "serverfail", "notFound", ""])
def test_unknown_method_error_types_are_refused(type_: str) -> None:
    with pytest.raises(ValueError):
        MethodError(type_)


def test_extra_properties_cannot_replace_type() -> None:
    with pytest.raises(ValueError):
        MethodError("forbidden", extra={"type": "serverFail"})


def test_set_errors() -> None:
    assert SetError("notFound").to_dict() == {"type": "notFound"}
    assert SetError.invalid_properties({"name", "color"}, "bad").to_dict() == {
        "type": "invalidProperties",
        "description": "bad",
        "properties": ["color", "name"],
    }
    assert SetError.already_exists("M1").to_dict() == {"type": "alreadyExists", "existingId": "M1"}
    assert SetError.blob_not_found(["B2", "B1"]).to_dict() == {
        "type": "blobNotFound",
        "notFound": ["B1", "B2"],
    }


def test_set_error_types_are_their_own_set() -> None:
    with pytest.raises(ValueError):
        SetError("stateMismatch")
    with pytest.raises(ValueError):
        MethodError("mailboxHasChild")
