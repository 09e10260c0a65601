"""Failed logins counted per client address and per user name, across replicas: past the counts
429 with Retry-After, the same whether the user exists or not, and never a lockout of the user
from where they usually log in."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI

from gateway.app import create_app
from gateway.cache.throttle import WINDOW_SECONDS
from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot


@contextlib.asynccontextmanager
async def gateway(
    dovecot: Dovecot, redis_url: str, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """A gateway behind a trusted proxy (loopback) that names client addresses."""
    settings = gateway_settings(dovecot.url, redis_url, trusted_proxies="127.0.0.1", **overrides)
    app = create_app(settings)
    async with (
        running_gateway(settings, app) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http, app


async def get_session(
    http: httpx.AsyncClient, user: str, password: str, address: str
) -> httpx.Response:
    return await http.get(
        "/jmap/session",
        auth=httpx.BasicAuth(user, password),
        headers={"x-forwarded-for": address},
    )


def opened(app: FastAPI) -> int:
    return int(app.state.services.pool.stats().opened)


def assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert 0 < int(response.headers["retry-after"]) <= WINDOW_SECONDS


async def test_an_address_past_its_failures_waits(dovecot: Dovecot, redis_url: str) -> None:
    async with gateway(dovecot, redis_url, login_failures_per_address=3) as (http, app):
        for guess in range(3):
            response = await get_session(http, "alice", f"guess-{guess}", "203.0.113.10")
            assert response.status_code == 401
        asked = opened(app)
        # Even right credentials from that address wait, unasked: it is still guessing.
        right = await get_session(http, "bob", dovecot.users["bob"], "203.0.113.10")
        assert_throttled(right)
        assert opened(app) == asked
        other = await get_session(http, "bob", dovecot.users["bob"], "198.51.100.10")
        assert other.status_code == 200


async def test_counts_are_shared_by_replicas(dovecot: Dovecot, redis_url: str) -> None:
    async with (
        gateway(dovecot, redis_url, login_failures_per_address=2) as (first, _),
        gateway(dovecot, redis_url, login_failures_per_address=2) as (second, _),
    ):
        for guess, http in enumerate((first, second)):
            response = await get_session(http, "alice", f"guess-{guess}", "203.0.113.11")
            assert response.status_code == 401
        assert_throttled(await get_session(first, "alice", "guess-x", "203.0.113.11"))
        assert_throttled(await get_session(second, "alice", "guess-y", "203.0.113.11"))


async def test_a_user_name_under_attack_spares_the_users_own_addresses(
    dovecot: Dovecot, redis_url: str
) -> None:
    password = dovecot.users["alice"]
    async with gateway(dovecot, redis_url, login_failures_per_username=3, auth_cache_seconds=0) as (
        http,
        _,
    ):
        home = await get_session(http, "alice", password, "198.51.100.12")
        assert home.status_code == 200
        # Guesses at alice's password from three addresses (each below its own count).
        for guess, address in enumerate(("203.0.113.1", "203.0.113.2", "203.0.113.3")):
            response = await get_session(http, "alice", f"guess-{guess}", address)
            assert response.status_code == 401
        # A new address waits, even with the right password ...
        assert_throttled(await get_session(http, "alice", password, "192.0.2.12"))
        # ... and spellings the upstream takes for alice count as alice (case, space).
        assert_throttled(await get_session(http, " ALICE", password, "192.0.2.13"))
        # Where alice logged in before the attack she still can: no lockout by guessing.
        assert (await get_session(http, "alice", password, "198.51.100.12")).status_code == 200
        # Other users are not affected.
        bob = await get_session(http, "bob", dovecot.users["bob"], "192.0.2.12")
        assert bob.status_code == 200


async def test_the_answers_do_not_tell_whether_a_user_exists(
    dovecot: Dovecot, redis_url: str
) -> None:
    async with gateway(dovecot, redis_url, login_failures_per_username=2) as (http, _):
        answers = {}
        for user in ("alice", "nobody-at-all"):
            for guess in range(2):
                first = await get_session(http, user, f"guess-{guess}", f"203.0.113.{20 + guess}")
                assert first.status_code == 401
            answers[user] = await get_session(http, user, "guess-x", "203.0.113.29")
        assert_throttled(answers["alice"])
        assert_throttled(answers["nobody-at-all"])
        assert answers["alice"].json() == answers["nobody-at-all"].json()


async def test_a_remembered_login_is_not_counted(dovecot: Dovecot, redis_url: str) -> None:
    """Credentials checked moments ago need no upstream check, so no count applies; another
    user's guessing from a shared address (a NAT) does not stop them."""
    password = dovecot.users["alice"]
    async with gateway(dovecot, redis_url, login_failures_per_address=2) as (http, app):
        assert (await get_session(http, "alice", password, "192.0.2.30")).status_code == 200
        for guess in range(2):
            response = await get_session(http, "bob", f"guess-{guess}", "192.0.2.30")
            assert response.status_code == 401
        assert_throttled(await get_session(http, "bob", dovecot.users["bob"], "192.0.2.30"))
        asked = opened(app)
        assert (await get_session(http, "alice", password, "192.0.2.30")).status_code == 200
        assert opened(app) == asked


async def test_oversized_credentials_are_refused_unasked(dovecot: Dovecot, redis_url: str) -> None:
    """Basic credentials of 8,000+ octets were a 500 (Dovecot reset the login line)."""
    async with gateway(dovecot, redis_url) as (http, app):
        for user, password in (("alice", "x" * 8_000), ("a" * 300, "pw"), ("alice", "y" * 70_000)):
            response = await get_session(http, user, password, "192.0.2.31")
            assert response.status_code == 401, response.text
            assert "too long" in response.json()["detail"]
        assert opened(app) == 0
