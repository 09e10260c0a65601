"""Who may open an event-source stream: push tokens from browsers, Basic from foreign pages,
other users, and the end of a stream whose credentials stop working."""

from __future__ import annotations

import base64

import pytest

from gateway.push import tokens
from tests.jmapclient import Jmap
from tests.push.eventsource_client import (
    ALL,
    Gateway,
    assert_current,
    changed_of,
    create_mailbox,
    stream,
)
from tests.servers import Dovecot


async def mint(sse_gateway: Gateway, sse_user: Jmap) -> str:
    response = await sse_gateway.http.post(tokens.TOKEN_PATH, auth=sse_user.auth)
    assert response.status_code == 200, response.text
    assert response.json()["accountId"] == sse_user.account_id
    return str(response.json()["token"])


async def test_a_push_token_opens_the_stream_without_a_header(
    sse_gateway: Gateway, sse_user: Jmap
) -> None:
    token = await mint(sse_gateway, sse_user)
    async with stream(sse_gateway.http, None, {**ALL, tokens.QUERY_PARAMETER: token}) as s:
        await assert_current(changed_of(await s.next(), sse_user.account_id), sse_user)
        state = await create_mailbox(sse_user, "Token")
        assert changed_of(await s.next(), sse_user.account_id)["Mailbox"] == state


@pytest.mark.parametrize("mangle", [lambda t: t[:-2] + "AA", lambda t: t + "x", lambda t: "p1.."])
async def test_a_bad_token_is_refused(sse_gateway: Gateway, sse_user: Jmap, mangle: object) -> None:
    token = await mint(sse_gateway, sse_user)
    bad = mangle(token)  # type: ignore[operator]
    response = await sse_gateway.http.get(
        "/jmap/eventsource/", params={**ALL, tokens.QUERY_PARAMETER: bad}
    )
    assert response.status_code == 401
    # No Basic challenge: a browser would show a login dialog.
    assert "Basic" not in response.headers["www-authenticate"]


async def test_another_users_token_never_opens_alices_stream(
    sse_gateway: Gateway, sse_user: Jmap, sse_other: Jmap, quick_keepalive: None
) -> None:
    """The account is the token's: another user's token streams that user's account, and
    the first user's changes never reach it."""
    token = await mint(sse_gateway, sse_other)
    async with stream(sse_gateway.http, None, {**ALL, tokens.QUERY_PARAMETER: token}) as s:
        await assert_current(changed_of(await s.next(), sse_other.account_id), sse_other)
        await create_mailbox(sse_user, "Private")
        comments = s.parser.comments
        assert await s.comments(comments + 3) == []


async def test_header_credentials_win_over_a_token(
    sse_gateway: Gateway, sse_user: Jmap, sse_other: Jmap
) -> None:
    """With both, the Authorization header names the caller (the token is not looked at)."""
    token = await mint(sse_gateway, sse_other)
    async with stream(sse_gateway.http, sse_user.auth, {**ALL, tokens.QUERY_PARAMETER: token}) as s:
        changed_of(await s.next(), sse_user.account_id)


async def test_a_token_stream_ends_at_its_lifetime(
    dovecot: Dovecot, sse_gateway: Gateway, sse_user: Jmap
) -> None:
    """Minted here with a two-second lifetime (the settings allow no less than a minute): the
    response ends by itself, cleanly."""
    secret = f"{sse_user.username}:{dovecot.users[sse_user.username]}".encode()
    header = "Basic " + base64.b64encode(secret).decode()
    principal = await sse_gateway.svc.authenticator.authenticate(header, None)
    key = tokens.token_key(await sse_gateway.svc.authenticator.server_secret())
    token, _ = tokens.mint(key, principal, ttl=2, stream_seconds=2)
    async with stream(sse_gateway.http, None, {**ALL, tokens.QUERY_PARAMETER: token}) as s:
        assert changed_of(await s.next(), sse_user.account_id)
        assert await s.rest(timeout=15) == []


async def test_basic_from_a_foreign_page_is_refused(sse_gateway: Gateway, sse_user: Jmap) -> None:
    response = await sse_gateway.http.get(
        "/jmap/eventsource/",
        params=ALL,
        auth=sse_user.auth,
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


async def test_basic_from_the_gateways_own_page_is_served(
    sse_gateway: Gateway, sse_user: Jmap
) -> None:
    async with stream(sse_gateway.http, sse_user.auth, headers={"Origin": sse_gateway.url}) as s:
        changed_of(await s.next(), sse_user.account_id)


async def test_a_token_from_a_foreign_page_is_served(sse_gateway: Gateway, sse_user: Jmap) -> None:
    token = await mint(sse_gateway, sse_user)
    query = {**ALL, tokens.QUERY_PARAMETER: token}
    async with stream(sse_gateway.http, None, query, {"Origin": "https://app.example"}) as s:
        changed_of(await s.next(), sse_user.account_id)


async def test_stream_with_refused_credentials_ends(
    private_dovecot: Dovecot, recheck_gateway: Gateway
) -> None:
    """A password changed upstream ends a header-authenticated stream (at its next recheck,
    or sooner when the account's watcher logs in again and is refused); the response ends
    cleanly."""
    user = await Jmap(recheck_gateway.http, "alice", private_dovecot.users["alice"]).start()
    async with stream(recheck_gateway.http, user.auth, {**ALL, "ping": "2"}) as s:
        assert (await s.next()).type == "state"
        set_password(private_dovecot, "alice", "changed-password")
        await s.rest(timeout=40)
    assert s.finished


def set_password(dovecot: Dovecot, user: str, password: str) -> None:
    """Dovecot's passwd-file is read again when it changes."""
    dovecot.users[user] = password
    lines = "".join(f"{name}:{{PLAIN}}{pw}::::::\n" for name, pw in dovecot.users.items())
    (dovecot.root / "passwd").write_text(lines)
