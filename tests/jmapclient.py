"""A small JMAP client for the tests: one request, several calls, answers by call id."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
# RFC 8621 2: the MailboxRights properties.
MAILBOX_RIGHTS = (
    "mayReadItems",
    "mayAddItems",
    "mayRemoveItems",
    "maySetSeen",
    "maySetKeywords",
    "mayCreateChild",
    "mayRename",
    "mayDelete",
    "maySubmit",
)


class Jmap:
    # The capabilities every request names (RFC 8620 3.3); a test of another capability's
    # methods adds its URN.
    using: tuple[str, ...] = (CORE, MAIL)

    def __init__(self, http: httpx.AsyncClient, username: str, password: str) -> None:
        self.http = http
        self.username = username
        self.auth = httpx.BasicAuth(username, password)
        self.account_id = ""

    async def start(self) -> Jmap:
        session = (await self.http.get("/jmap/session", auth=self.auth)).json()
        self.account_id = session["primaryAccounts"][MAIL]
        return self

    async def request(
        self, *calls: tuple[str, dict[str, Any]], using: Sequence[str] | None = None
    ) -> list[list[Any]]:
        """Send the calls (accountId filled in) and return the method responses; ``using``
        replaces the client's own capabilities for this request."""
        method_calls = [
            [name, {"accountId": self.account_id, **args}, f"c{i}"]
            for i, (name, args) in enumerate(calls)
        ]
        body = {"using": list(self.using if using is None else using), "methodCalls": method_calls}
        response = await self.http.post(
            "/jmap/api/",
            content=json.dumps(body),
            auth=self.auth,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200, response.text
        return response.json()["methodResponses"]  # type: ignore[no-any-return]

    async def call(self, name: str, **args: Any) -> dict[str, Any]:
        """One call; fails the test if it returned an error."""
        (response,) = await self.request((name, args))
        assert response[0] == name, response
        return response[1]  # type: ignore[no-any-return]

    async def mailboxes(self) -> dict[str, dict[str, Any]]:
        """All mailboxes by their full path of names, e.g. "Work/Projects"."""
        listed = (await self.call("Mailbox/get", ids=None))["list"]
        by_id = {m["id"]: m for m in listed}

        def path(m: dict[str, Any]) -> str:
            parent = by_id.get(m["parentId"]) if m["parentId"] else None
            return m["name"] if parent is None else path(parent) + "/" + m["name"]

        return {path(m): m for m in listed}

    async def upload(self, data: bytes, media_type: str = "application/octet-stream") -> str:
        """Upload a blob (RFC 8620 6.1); its blob id."""
        response = await self.http.post(
            f"/jmap/upload/{self.account_id}/",
            content=data,
            auth=self.auth,
            headers={"content-type": media_type},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["blobId"])
