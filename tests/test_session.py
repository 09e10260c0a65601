"""The Session resource and its discovery (RFC 8620 2) through a running gateway."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from gateway.config import Settings
from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"


async def test_well_known_redirects_to_the_session(http: httpx.AsyncClient) -> None:
    response = await http.get("/.well-known/jmap")
    assert response.status_code == 301
    assert response.headers["location"] == str(http.base_url).rstrip("/") + "/jmap/session"


async def test_session_after_following_the_redirect(
    http: httpx.AsyncClient, alice: httpx.BasicAuth
) -> None:
    response = await http.get("/.well-known/jmap", auth=alice, follow_redirects=True)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    session = response.json()
    base = str(http.base_url).rstrip("/")
    assert session["username"] == "alice"
    assert session["apiUrl"] == f"{base}/jmap/api/"
    assert (
        session["downloadUrl"]
        == f"{base}/jmap/download/{{accountId}}/{{blobId}}/{{name}}?accept={{type}}"
    )
    assert session["uploadUrl"] == f"{base}/jmap/upload/{{accountId}}/"
    assert session["eventSourceUrl"] == (
        f"{base}/jmap/eventsource/?types={{types}}&closeafter={{closeafter}}&ping={{ping}}"
    )
    assert isinstance(session["state"], str) and session["state"]


async def test_session_core_capability_has_every_limit(
    http: httpx.AsyncClient, alice: httpx.BasicAuth
) -> None:
    session = (await http.get("/jmap/session", auth=alice)).json()
    assert session["capabilities"][CORE] == {
        "maxSizeUpload": 50_000_000,
        "maxConcurrentUpload": 4,
        "maxSizeRequest": 10_000_000,
        "maxConcurrentRequests": 8,
        "maxCallsInRequest": 32,
        "maxObjectsInGet": 500,
        "maxObjectsInSet": 500,
        "collationAlgorithms": ["i;ascii-casemap", "i;octet", "i;unicode-casemap"],
    }
    assert MAIL in session["capabilities"]


async def test_one_personal_account_that_hides_the_username(
    http: httpx.AsyncClient, alice: httpx.BasicAuth
) -> None:
    session = (await http.get("/jmap/session", auth=alice)).json()
    ((account_id, account),) = session["accounts"].items()
    assert re.fullmatch(r"a[a-z2-7]{24}", account_id)
    assert "alice" not in account_id
    assert account["name"] == "alice"
    assert account["isPersonal"] is True and account["isReadOnly"] is False
    assert MAIL in account["accountCapabilities"]
    assert session["primaryAccounts"] == {MAIL: account_id}


async def test_account_id_is_stable_and_per_user(
    http: httpx.AsyncClient, alice: httpx.BasicAuth, bob: httpx.BasicAuth
) -> None:
    first = (await http.get("/jmap/session", auth=alice)).json()
    again = (await http.get("/jmap/session", auth=alice)).json()
    other = (await http.get("/jmap/session", auth=bob)).json()
    assert first["accounts"].keys() == again["accounts"].keys()
    assert first["state"] == again["state"]
    assert first["accounts"].keys() != other["accounts"].keys()


async def test_session_is_not_cached_by_intermediaries(
    http: httpx.AsyncClient, alice: httpx.BasicAuth
) -> None:
    response = await http.get("/jmap/session", auth=alice)
    assert "no-store" in response.headers["cache-control"]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"max_objects_in_get": 77, "max_mailboxes_per_email": 3},
        {"public_url": "https://jmap.example.com/mail/", "max_size_request": 1_000_000},
    ],
)
async def test_api_session_state_is_the_sessions_state(
    dovecot: Dovecot, redis_url: str, overrides: dict[str, Any]
) -> None:
    # RFC 8620 3.4: sessionState is the Session's state, which the API path computes alone.
    settings = gateway_settings(dovecot.url, redis_url, **overrides)
    echo = {"using": [CORE], "methodCalls": [["Core/echo", {}, "c"]]}
    async with (
        running_gateway(settings),
        httpx.AsyncClient(base_url=settings_url(settings)) as http,
    ):
        for user in ("alice", "bob"):
            auth = httpx.BasicAuth(user, dovecot.users[user])
            session = (await http.get("/jmap/session", auth=auth)).json()
            answer = await http.post("/jmap/api/", json=echo, auth=auth)
            assert answer.json()["sessionState"] == session["state"]


def settings_url(settings: Settings) -> str:
    """Where the test reaches the gateway, whatever public URL it advertises."""
    return f"http://{settings.host}:{settings.port}"
