"""Helpers of the PushSubscription tests: calls without accountId over plain httpx, and what
Redis holds for an account, read raw (from outside the code under test)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import msgpack
import redis.asyncio as aredis

from gateway.config import Settings
from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
# The one push destination the test gateways admit: a loopback address nothing listens on,
# put on the operator's allow-list (GATEWAY_WEBPUSH_ALLOWED_DESTINATIONS).
ALLOWED = "127.0.0.2"
PUSH_URL = f"https://{ALLOWED}:9/push/?device=X8980fc&client=12c6d086"


def push_settings(dovecot: Dovecot, redis_url: str, **overrides: Any) -> Settings:
    return gateway_settings(
        dovecot.url, redis_url, webpush_allowed_destinations=f"{ALLOWED}/32", **overrides
    )


@asynccontextmanager
async def push_gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http


class User:
    """One user's PushSubscription calls, exactly as a client sends them."""

    def __init__(self, http: httpx.AsyncClient, dovecot: Dovecot) -> None:
        self.http = http
        self.name = dovecot.fresh_user()
        self.auth = httpx.BasicAuth(self.name, dovecot.users[self.name])
        self.account_id = ""

    async def start(self) -> User:
        session = (await self.http.get("/jmap/session", auth=self.auth)).json()
        self.account_id = session["primaryAccounts"][MAIL]
        return self

    async def request(self, *calls: tuple[str, dict[str, Any]]) -> list[list[Any]]:
        body = {
            "using": [CORE],
            "methodCalls": [[name, args, f"c{i}"] for i, (name, args) in enumerate(calls)],
        }
        response = await self.http.post(
            "/jmap/api/",
            content=json.dumps(body),
            auth=self.auth,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200, response.text
        return response.json()["methodResponses"]  # type: ignore[no-any-return]

    async def call(self, name: str, **args: Any) -> dict[str, Any]:
        (response,) = await self.request((name, args))
        assert response[0] == name, response
        return response[1]  # type: ignore[no-any-return]

    async def create(self, **props: Any) -> dict[str, Any]:
        """PushSubscription/set creating one; its ``created`` entry (fails the test if not)."""
        props = {"deviceClientId": "a889-ffea-910", "url": PUSH_URL, **props}
        response = await self.call("PushSubscription/set", create={"k": props})
        assert response["created"] is not None, response
        return response["created"]["k"]  # type: ignore[no-any-return]

    async def not_created(self, **props: Any) -> dict[str, Any]:
        """The SetError of a create expected to fail."""
        response = await self.call("PushSubscription/set", create={"k": props})
        assert response["created"] is None, response
        return response["notCreated"]["k"]  # type: ignore[no-any-return]


class Raw:
    """What Redis holds for an account's subscriptions, read with a plain client."""

    def __init__(self, redis_url: str, account_id: str) -> None:
        self.client = aredis.Redis.from_url(redis_url)
        self.base = f"jg:{{{account_id}}}"
        self.account_id = account_id

    async def record(self, subscription_id: str) -> dict[str, Any] | None:
        raw = await self.client.hget(f"{self.base}:push-subscriptions", subscription_id)
        return None if raw is None else msgpack.unpackb(raw)

    async def pending(self, subscription_id: str) -> dict[str, Any] | None:
        raw = await self.client.hget(f"{self.base}:push-pending", subscription_id)
        return None if raw is None else msgpack.unpackb(raw)

    async def due(self, subscription_id: str) -> float | None:
        score = await self.client.zscore("jg:push-due", f"{self.account_id} {subscription_id}")
        return None if score is None else float(score)

    async def login(self) -> bytes | None:
        return await self.client.get(f"{self.base}:push-login")  # type: ignore[no-any-return]

    async def subscribed(self) -> float | None:
        score = await self.client.zscore("jg:push-subscribed", self.account_id)
        return None if score is None else float(score)

    async def aclose(self) -> None:
        await self.client.aclose()


def seconds(utc_date: str) -> float:
    return datetime.fromisoformat(utc_date.replace("Z", "+00:00")).timestamp()


def utc(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
