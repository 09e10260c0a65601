"""What one request can make the gateway produce is bounded: arguments resolved from result
references by maxSizeRequest, the method responses by max_size_response, each with
requestTooLarge past it (RFC 8620 5.1's error for a call larger than the server processes).

The hostile review's request: Core/echo calls whose arguments reference the previous response
twice, so each response doubles; 2.9 KB produced 16.7 MB, and 32 calls would be terabytes.
The tests count the octets of the responses, never time.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot

CORE = "urn:ietf:params:jmap:core"
MAX_SIZE_REQUEST = 100_000
MAX_SIZE_RESPONSE = 1_000_000


@pytest.fixture
async def http(dovecot: Dovecot, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = gateway_settings(
        dovecot.url,
        redis_url,
        max_size_request=MAX_SIZE_REQUEST,
        max_size_response=MAX_SIZE_RESPONSE,
    )
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def post(http: httpx.AsyncClient, alice: httpx.BasicAuth, calls: list[Any]) -> httpx.Response:
    body = json.dumps({"using": [CORE], "methodCalls": calls})
    response = await http.post(
        "/jmap/api/", content=body, auth=alice, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    return response


def ref(call_id: str) -> dict[str, str]:
    return {"resultOf": call_id, "name": "Core/echo", "path": ""}


async def test_doubling_echoes_stop_at_the_request_size(
    http: httpx.AsyncClient, alice: httpx.BasicAuth
) -> None:
    calls: list[Any] = [["Core/echo", {"pad": "x" * 2_000}, "c0"]]
    # 16 calls: without the bound the last would be 2,000 x 2^15 octets (64 MB), not terabytes,
    # so the test fails rather than exhausting the machine where the bound is missing.
    calls += [
        ["Core/echo", {"#a": ref(f"c{n}"), "#b": ref(f"c{n}")}, f"c{n + 1}"] for n in range(15)
    ]
    response = await post(http, alice, calls)
    answers = response.json()["methodResponses"]
    sizes = [len(json.dumps(answer[1])) for answer in answers]
    # Each call doubles the one before until its arguments would pass maxSizeRequest.
    grown = [answer for answer in answers if answer[0] == "Core/echo"]
    assert 2 ** (len(grown) - 1) * 2_000 <= MAX_SIZE_REQUEST < 2 ** len(grown) * 2_000
    assert max(sizes) <= MAX_SIZE_REQUEST
    first_refused = answers[len(grown)][1]
    assert first_refused["type"] == "requestTooLarge"
    # The rest refer to an error response: RFC 8620 3.7 makes that invalidResultReference.
    assert {a[1]["type"] for a in answers[len(grown) + 1 :]} == {"invalidResultReference"}
    assert len(response.content) < 2 * MAX_SIZE_REQUEST


async def test_responses_stop_at_max_size_response(
    http: httpx.AsyncClient, alice: httpx.BasicAuth
) -> None:
    """Each call repeats a 90 KB response once (allowed), until the responses reach the limit."""
    calls: list[Any] = [["Core/echo", {"pad": "x" * 90_000}, "c0"]]
    calls += [["Core/echo", {"#again": ref("c0")}, f"c{n}"] for n in range(1, 32)]
    response = await post(http, alice, calls)
    answers = response.json()["methodResponses"]
    kept = [a for a in answers if a[0] == "Core/echo"]
    refused = [a for a in answers if a[0] == "error"]
    assert len(kept) == MAX_SIZE_RESPONSE // 90_000
    assert {a[1]["type"] for a in refused} == {"requestTooLarge"}
    assert [a[2] for a in answers] == [c[2] for c in calls]
    assert len(response.content) <= MAX_SIZE_RESPONSE + len(refused) * 300


async def test_errors_and_small_responses_still_fit(
    http: httpx.AsyncClient, alice: httpx.BasicAuth
) -> None:
    calls: list[Any] = [["Core/echo", {"pad": "x" * 90_000}, "c0"]]
    calls += [["Core/echo", {"#again": ref("c0")}, f"c{n}"] for n in range(1, 11)]
    calls += [["Nope/get", {}, "unknown"], ["Core/echo", {"#again": ref("c0")}, "late"]]
    answers = (await post(http, alice, calls)).json()["methodResponses"]
    assert answers[-2][1]["type"] == "unknownMethod"
    assert answers[-1][1]["type"] == "requestTooLarge"


async def test_a_call_that_writes_keeps_its_response_past_the_limit(
    dovecot: Dovecot, http: httpx.AsyncClient
) -> None:
    """The client must learn what a write changed, however large the responses before it."""
    user = dovecot.fresh_user()
    auth = httpx.BasicAuth(user, dovecot.users[user])
    session = (await http.get("/jmap/session", auth=auth)).json()
    account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
    calls: list[Any] = [["Core/echo", {"pad": "x" * 90_000}, "c0"]]
    calls += [["Core/echo", {"#again": ref("c0")}, f"c{n}"] for n in range(1, 12)]
    # 40 Mailboxes: their created objects take more than the 10 KB the echoes leave.
    names = [f"amplified-{n}" for n in range(40)]
    create = {"accountId": account, "create": {name: {"name": name} for name in names}}
    calls += [["Mailbox/set", create, "write"], ["Mailbox/get", {"accountId": account}, "read"]]
    body = json.dumps({"using": [CORE, "urn:ietf:params:jmap:mail"], "methodCalls": calls})
    response = await http.post(
        "/jmap/api/", content=body, auth=auth, headers={"content-type": "application/json"}
    )
    answers = response.json()["methodResponses"]
    assert answers[-2][0] == "Mailbox/set" and set(answers[-2][1]["created"]) == set(names)
    assert len(json.dumps(answers[-2])) > 10_000
    assert answers[-1][1]["type"] == "requestTooLarge"
    imap = dovecot.client(user)
    listed = b"".join(imap.list()[1])
    imap.logout()
    assert all(name.encode() in listed for name in names)
