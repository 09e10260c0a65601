"""The Session object (RFC 8620 2) and the core capability object."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.jmap.capabilities import CORE, MAIL, CoreLimits
from gateway.jmap.dispatch import AccountAccess
from gateway.jmap.session import (
    API_PATH,
    DOWNLOAD_PATH,
    EVENT_SOURCE_PATH,
    UPLOAD_PATH,
    AccountInfo,
    PersonalSession,
    account_access,
    build_session,
)

LIMITS = CoreLimits(
    max_size_upload=50_000_000,
    max_concurrent_upload=8,
    max_size_request=10_000_000,
    max_concurrent_requests=8,
    max_calls_in_request=32,
    max_objects_in_get=256,
    max_objects_in_set=128,
    collation_algorithms=("i;ascii-numeric", "i;ascii-casemap", "i;unicode-casemap"),
)

ACCOUNTS = {
    "A13824": AccountInfo("john@example.com", True, False, {MAIL: {"maxMailboxDepth": 10}}),
    "A97813": AccountInfo("jane@example.com", False, True, {MAIL: {"maxMailboxDepth": 10}}),
}


def session(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "username": "john@example.com",
        "accounts": ACCOUNTS,
        "primary_accounts": {MAIL: "A13824"},
        "capabilities": {CORE: LIMITS.to_capability(), MAIL: {}},
        "base_url": "https://jmap.example.com",
    }
    arguments.update(overrides)
    return build_session(**arguments)


def test_core_capability_object() -> None:
    assert LIMITS.to_capability() == {
        "maxSizeUpload": 50_000_000,
        "maxConcurrentUpload": 8,
        "maxSizeRequest": 10_000_000,
        "maxConcurrentRequests": 8,
        "maxCallsInRequest": 32,
        "maxObjectsInGet": 256,
        "maxObjectsInSet": 128,
        "collationAlgorithms": ["i;ascii-numeric", "i;ascii-casemap", "i;unicode-casemap"],
    }


def test_default_limits_are_the_suggested_minimums() -> None:
    assert CoreLimits().to_capability() == {
        "maxSizeUpload": 50_000_000,
        "maxConcurrentUpload": 4,
        "maxSizeRequest": 10_000_000,
        "maxConcurrentRequests": 4,
        "maxCallsInRequest": 16,
        "maxObjectsInGet": 500,
        "maxObjectsInSet": 500,
        "collationAlgorithms": [],
    }


def test_limits_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="max_calls_in_request"):
        CoreLimits(max_calls_in_request=0)


def test_session_object() -> None:
    result = session()
    state = result.pop("state")
    assert result == {
        "capabilities": {CORE: LIMITS.to_capability(), MAIL: {}},
        "accounts": {
            "A13824": {
                "name": "john@example.com",
                "isPersonal": True,
                "isReadOnly": False,
                "accountCapabilities": {MAIL: {"maxMailboxDepth": 10}},
            },
            "A97813": {
                "name": "jane@example.com",
                "isPersonal": False,
                "isReadOnly": True,
                "accountCapabilities": {MAIL: {"maxMailboxDepth": 10}},
            },
        },
        "primaryAccounts": {MAIL: "A13824"},
        "username": "john@example.com",
        "apiUrl": "https://jmap.example.com/jmap/api/",
        "downloadUrl": "https://jmap.example.com/jmap/download/{accountId}/{blobId}/{name}"
        "?accept={type}",
        "uploadUrl": "https://jmap.example.com/jmap/upload/{accountId}/",
        "eventSourceUrl": "https://jmap.example.com/jmap/eventsource/"
        "?types={types}&closeafter={closeafter}&ping={ping}",
    }
    assert isinstance(state, str)
    assert 8 <= len(state) <= 32


def test_urls_start_with_the_mounted_paths() -> None:
    result = session()
    assert result["apiUrl"] == "https://jmap.example.com" + API_PATH
    assert result["downloadUrl"].startswith("https://jmap.example.com" + DOWNLOAD_PATH)
    assert result["uploadUrl"].startswith("https://jmap.example.com" + UPLOAD_PATH)
    assert result["eventSourceUrl"].startswith("https://jmap.example.com" + EVENT_SOURCE_PATH)


def test_trailing_slash_of_base_url_is_dropped() -> None:
    assert session(base_url="https://jmap.example.com/") == session()


def test_state_is_stable() -> None:
    reordered = dict(reversed(list(ACCOUNTS.items())))
    assert session()["state"] == session()["state"]
    assert session(accounts=reordered)["state"] == session()["state"]


@pytest.mark.parametrize(
    "change",
    [
        {"username": "jane@example.com"},
        {"accounts": {"A13824": ACCOUNTS["A13824"]}},
        {"primary_accounts": {}},
        {"capabilities": {CORE: CoreLimits().to_capability(), MAIL: {}}},
        {"base_url": "https://other.example.com"},
    ],
)
def test_state_changes_with_content(change: dict[str, Any]) -> None:
    assert session(**change)["state"] != session()["state"]


def test_core_capability_is_required() -> None:
    with pytest.raises(ValueError, match="core"):
        session(capabilities={MAIL: {}})


def test_primary_account_must_be_listed() -> None:
    with pytest.raises(ValueError, match="'Z1'"):
        session(primary_accounts={MAIL: "Z1"})


def test_account_access_mirrors_the_session() -> None:
    assert account_access(ACCOUNTS) == {
        "A13824": AccountAccess("A13824", frozenset({MAIL}), read_only=False),
        "A97813": AccountAccess("A97813", frozenset({MAIL}), read_only=True),
    }


PERSONAL = PersonalSession(
    {CORE: LIMITS.to_capability(), MAIL: {}},
    {MAIL: {"maxMailboxDepth": 10, "emailQuerySortOptions": ["receivedAt", "size"]}},
    "https://jmap.example.com",
)


def test_personal_session_is_the_session_of_the_own_account() -> None:
    own = AccountInfo("john@example.com", True, False, PERSONAL.account_capabilities)
    assert PERSONAL.build("john@example.com", "A13824") == session(accounts={"A13824": own})


@pytest.mark.parametrize(
    ("username", "account_id"),
    [
        ("john@example.com", "A13824"),
        ('jöhn "the" \\ user', "a" * 25),
        # The stand-ins the template is cut at, as real values: nothing is cut twice.
        ("\x00username", "\x00account"),
        ("\x00account", "\x00username"),
        ("", "-"),
    ],
)
def test_state_alone_is_the_sessions_state(username: str, account_id: str) -> None:
    assert PERSONAL.state(username, account_id) == PERSONAL.build(username, account_id)["state"]


@pytest.mark.parametrize(
    "shape",
    [
        PersonalSession({CORE: CoreLimits().to_capability()}, {}, "http://127.0.0.1:8080/"),
        PersonalSession(
            {CORE: LIMITS.to_capability(), MAIL: {}, "urn:example:x": {"k": ["v"]}},
            {MAIL: {}, "urn:example:x": {"k": None}},
            "https://jmap.example.com/base",
        ),
    ],
)
def test_state_alone_for_other_deployments(shape: PersonalSession) -> None:
    for username, account_id in [("alice", "A1"), ("bob", "B2")]:
        assert shape.state(username, account_id) == shape.build(username, account_id)["state"]
    assert shape.state("alice", "A1") != shape.state("bob", "A1")
    assert shape.state("alice", "A1") != shape.state("alice", "B2")


@pytest.mark.parametrize(
    ("capabilities", "account_capabilities"),
    [
        ({CORE: {}, "urn:example:x": {"k": "\x00account"}}, {}),
        ({CORE: {}}, {MAIL: {"k": "\x00username"}}),
    ],
)
def test_a_fixed_value_holding_a_stand_in_is_refused(
    capabilities: dict[str, Any], account_capabilities: dict[str, Any]
) -> None:
    # Its state would digest the caller's values in its place: refused at start-up instead.
    with pytest.raises(ValueError, match="stand-in"):
        PersonalSession(capabilities, account_capabilities, "https://jmap.example.com")
