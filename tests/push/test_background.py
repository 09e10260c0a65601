"""Watching subscribed accounts without the user's password (issue 17 item 4): replicas
(Services on one Redis) in front of a Dovecot with a master user, no client connected, the
subscription written in Redis as contracts17 A lays it out; the upstream changed by a plain
imaplib session; what the gateway did is heard from its journal, from Dovecot's own count of
sessions, and from the lease in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import re
import secrets
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio

from gateway import services
from gateway.auth import account_id_for
from gateway.cache.keys import AccountKeys
from gateway.metrics import Metrics
from gateway.push import background as background_module
from tests.conftest import CYRUS_PROXY, MASTER_USER, gateway_settings, master_settings
from tests.cyrus import Cyrus
from tests.push.watching import (
    catch_ups,
    dovecot_sessions,
    eventually,
    hearing,
    imap,
    lease_holder,
    message,
    sent,
)
from tests.rediscluster import RedisClusterSet
from tests.servers import LOOPBACK, Dovecot

# The shortest lease the settings allow: a full round every second.
LEASE = 3.0
# Full rounds a test lets pass before it says nothing happened.
ROUNDS = 4


@contextlib.asynccontextmanager
async def replicas(count: int, **settings: Any) -> AsyncIterator[list[services.Services]]:
    started: list[services.Services] = []
    try:
        for _ in range(count):
            values = master_settings(push_watch_lease_seconds=LEASE, **settings)
            started.append(await services.start(values, Metrics()))
        yield started
    finally:
        for svc in started:
            await services.stop(svc)


def own_identity(server: Dovecot | Cyrus, user: str) -> str:
    """The user's INBOX id (Dovecot's X-GUID, Cyrus's RFC 8474 MAILBOXID) as the gateway
    names identities, asked by a plain imaplib session of their own."""
    item = "MAILBOXID" if isinstance(server, Cyrus) else "X-GUID"
    client = server.client(user)
    try:
        _, data = client.status("INBOX", f"({item})")
    finally:
        client.logout()
    line = data[0] if isinstance(data[0], bytes) else b""
    found = re.search(item.encode() + rb" \(?([A-Za-z0-9_-]+)", line)
    assert found is not None, line
    return f"{item.lower()}:{found.group(1).decode()}"


async def account_of(svc: services.Services, server: Dovecot | Cyrus, user: str) -> str:
    """The user's account id as the gateway derives it (gateway.auth), from the identity the
    upstream gives the user's own session: no gateway request, no credentials kept."""
    secret = await svc.authenticator.server_secret()
    return account_id_for(secret, await asyncio.to_thread(own_identity, server, user))


async def subscribe(redis_url: str, account_id: str, login: str, expires_in: float = 3600) -> None:
    """What subs' store keeps for an account with a verified subscription (contracts17 A):
    its latest expiry in jg:push-subscribed and the owner's login name."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await write_subscribed(client, account_id, login, expires_in)
    finally:
        await client.aclose()


async def write_subscribed(
    client: Any, account_id: str, login: str, expires_in: float = 3600
) -> None:
    await client.zadd("jg:push-subscribed", {account_id: int(time.time() + expires_in)})
    await client.set(f"{AccountKeys(account_id).base}:push-login", login)


def append(subject: str) -> object:
    return lambda c: c.append("INBOX", "", None, message(subject))


def watchers(replicas: list[services.Services], account_id: str) -> list[services.Services]:
    return [r for r in replicas if account_id in r.watches.watching()]


@pytest.fixture
def master(master_dovecot: Dovecot, redis_url: str) -> dict[str, Any]:
    """The keyword arguments replicas() passes to master_settings."""
    return {"dovecot": master_dovecot, "redis_url": redis_url}


async def test_a_subscribed_account_is_watched_with_no_client_connected(
    master_dovecot: Dovecot, redis_url: str, master: dict[str, Any]
) -> None:
    user = master_dovecot.fresh_user()
    async with replicas(1, **master) as [svc]:
        account = await account_of(svc, master_dovecot, user)
        sessions = dovecot_sessions(master_dovecot, user)
        with hearing() as heard:
            await subscribe(redis_url, account, user)
            await eventually(lambda: account in svc.watches.watching())
            # Its first catch-up built the index; then an APPEND by another client.
            await eventually(lambda: catch_ups(svc) >= 1)
            since = heard.mark()
            await imap(master_dovecot, user, append("while nobody listens"))
            assert "Email" in await heard.until(account, since, {"Email"})
        assert await lease_holder(svc, account) == svc.replica_id
        assert dovecot_sessions(master_dovecot, user) == sessions + 1
        # Nobody brought the user's credentials: the keeper holds none for the account.
        assert svc.keeper.candidates(account) == []


async def test_the_separator_login_watches_too(
    master_dovecot: Dovecot, redis_url: str, master: dict[str, Any]
) -> None:
    user = master_dovecot.fresh_user()
    async with replicas(1, imap_master_login="separator:*", **master) as [svc]:
        account = await account_of(svc, master_dovecot, user)
        with hearing() as heard:
            await subscribe(redis_url, account, user)
            await eventually(lambda: catch_ups(svc) >= 1)
            since = heard.mark()
            await imap(master_dovecot, user, append("separator"))
            await heard.until(account, since, {"Email"})
        assert account in svc.watches.watching()


async def test_the_watcher_stops_when_the_subscriptions_are_gone(
    master_dovecot: Dovecot, redis_url: str, master: dict[str, Any]
) -> None:
    user = master_dovecot.fresh_user()
    async with replicas(1, **master) as [svc]:
        account = await account_of(svc, master_dovecot, user)
        sessions = dovecot_sessions(master_dovecot, user)
        await subscribe(redis_url, account, user)
        await eventually(lambda: account in svc.watches.watching())
        await eventually(lambda: dovecot_sessions(master_dovecot, user) == sessions + 1)
        # The last subscription expired: the store's zset names a past expiry.
        await subscribe(redis_url, account, user, expires_in=-1)
        await eventually(lambda: account not in svc.watches.watching())
        await eventually(lambda: dovecot_sessions(master_dovecot, user) == sessions)
        assert await lease_holder(svc, account) is None


async def test_two_replicas_run_one_watcher(
    master_dovecot: Dovecot, redis_url: str, master: dict[str, Any]
) -> None:
    users = [master_dovecot.fresh_user() for _ in range(3)]
    async with replicas(2, **master) as both:
        accounts = [await account_of(both[0], master_dovecot, u) for u in users]
        sessions = [dovecot_sessions(master_dovecot, u) for u in users]
        with hearing() as heard:
            for account, user in zip(accounts, users, strict=True):
                await subscribe(redis_url, account, user)
            for account in accounts:
                await eventually(lambda a=account: len(watchers(both, a)) == 1)
            await eventually(lambda: sum(catch_ups(r) for r in both) >= len(accounts))
            # Rounds later, still one watcher per account, one upstream session each.
            await asyncio.sleep(ROUNDS * LEASE / 3)
            for account, user, before in zip(accounts, users, sessions, strict=True):
                [holder] = watchers(both, account)
                assert await lease_holder(holder, account) == holder.replica_id
                assert dovecot_sessions(master_dovecot, user) == before + 1
            since = heard.mark()
            await imap(master_dovecot, users[0], append("one of two"))
            await heard.until(accounts[0], since, {"Email"})


async def test_on_a_redis_cluster(master_dovecot: Dovecot, redis_cluster: RedisClusterSet) -> None:
    """The zset lives in one slot, each account's login and lease in the account's: read in
    pipelines that span the nodes."""
    user = master_dovecot.fresh_user()
    async with replicas(1, dovecot=master_dovecot, redis_url=redis_cluster.url) as [svc]:
        account = await account_of(svc, master_dovecot, user)
        with hearing() as heard:
            await write_subscribed(svc.store.client, account, user)
            await eventually(lambda: catch_ups(svc) >= 1)
            since = heard.mark()
            await imap(master_dovecot, user, append("on a cluster"))
            await heard.until(account, since, {"Email"})
        await write_subscribed(svc.store.client, account, user, expires_in=-1)
        await eventually(lambda: account not in svc.watches.watching())


async def test_a_cyrus_proxy_server_watches_as_the_user(proxy_cyrus: Cyrus, redis_url: str) -> None:
    """Cyrus: the proxyservers account with an authorization identity; IDLE-only watching."""
    user = proxy_cyrus.fresh_user()
    settings = {"dovecot": proxy_cyrus, "redis_url": redis_url, "master": CYRUS_PROXY}
    async with replicas(1, **settings) as [svc]:
        account = await account_of(svc, proxy_cyrus, user)
        with hearing() as heard:
            await subscribe(redis_url, account, user)
            await eventually(lambda: catch_ups(svc) >= 1)
            since = heard.mark()
            await imap(proxy_cyrus, user, append("cyrus"))
            await heard.until(account, since, {"Email"})
        assert account in svc.watches.watching()


async def test_without_master_credentials_subscribed_accounts_are_not_watched(
    master_dovecot: Dovecot, redis_url: str
) -> None:
    user = master_dovecot.fresh_user()
    settings = gateway_settings(master_dovecot.url, redis_url, push_watch_lease_seconds=LEASE)
    svc = await services.start(settings, Metrics())
    try:
        account = await account_of(svc, master_dovecot, user)
        sessions = dovecot_sessions(master_dovecot, user)
        await subscribe(redis_url, account, user)
        await asyncio.sleep(ROUNDS * LEASE / 3)
        assert svc.watches.watching() == frozenset()
        assert await lease_holder(svc, account) is None
        assert dovecot_sessions(master_dovecot, user) == sessions
    finally:
        await services.stop(svc)


async def test_a_wrong_master_password_watches_nothing_and_leaks_nothing(
    master_dovecot: Dovecot,
    redis_url: str,
    master: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-master-pw-51d0"
    users = [master_dovecot.fresh_user() for _ in range(2)]
    async with replicas(1, password=wrong, **master) as [svc]:
        accounts = [await account_of(svc, master_dovecot, u) for u in users]
        for account, user in zip(accounts, users, strict=True):
            await subscribe(redis_url, account, user)
        await eventually(lambda: "refused the master user" in caplog.text)
        await eventually(lambda: svc.watches.watching() == frozenset())
        tried = logins(caplog)
        await asyncio.sleep(ROUNDS * LEASE / 3)
        assert svc.watches.watching() == frozenset()
        for account in accounts:
            assert await lease_holder(svc, account) is None
        # The refusal paused background logins: none since, not one per account and round.
        assert logins(caplog) == tried <= len(accounts)
        refusals = [r for r in caplog.records if "refused the master user" in r.getMessage()]
        assert len(refusals) == 1
        assert wrong not in repr(svc.settings)
        dump = await redis_dump(redis_url)
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in (wrong, MASTER_USER[1]):
        assert secret not in text
        assert secret.encode() not in dump


async def test_a_login_name_of_another_user_is_refused(
    master_dovecot: Dovecot,
    redis_url: str,
    master: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The push-login names someone else (a name reused, a store gone wrong): the master
    login reaches that user's mailbox, whose identity maps to another account: refused."""
    caplog.set_level(logging.INFO)
    owner, other = master_dovecot.fresh_user(), master_dovecot.fresh_user()
    async with replicas(1, **master) as [svc]:
        account = await account_of(svc, master_dovecot, owner)
        other_account = await account_of(svc, master_dovecot, other)
        sessions = dovecot_sessions(master_dovecot, other)
        await subscribe(redis_url, account, other)
        await eventually(lambda: "reached another account's mailbox" in caplog.text)
        await asyncio.sleep(ROUNDS * LEASE / 3)
        assert svc.watches.watching() == frozenset()
        assert await lease_holder(svc, account) is None
        assert await lease_holder(svc, other_account) is None
        assert dovecot_sessions(master_dovecot, other) == sessions
        # Remembered: not tried again at every round.
        tries = [r for r in caplog.records if "reached another account" in r.getMessage()]
        assert len(tries) == 1


async def test_listeners_credentials_stay_preferred(
    master_dovecot: Dovecot, redis_url: str, master: dict[str, Any]
) -> None:
    """A subscribed account whose owner has a listener here is watched with the listener's
    own login, not the master user's."""
    from tests.push.watching import principal

    user = master_dovecot.fresh_user()
    async with replicas(1, **master) as [svc]:
        owner = await principal(svc, master_dovecot, user)
        await subscribe(redis_url, owner.account_id, user)
        async with svc.push.listen(owner.account_id, owner, None):
            await eventually(lambda: owner.account_id in svc.watches.watching())
            await eventually(lambda: catch_ups(svc) >= 1)
            watch = svc.watches._watches[owner.account_id]
            assert not watch.background
        # Its listener gone, the account is still subscribed: still watched.
        await asyncio.sleep(ROUNDS * LEASE / 3)
        assert owner.account_id in svc.watches.watching()


async def test_background_watchers_per_replica_are_bounded(
    master_dovecot: Dovecot,
    redis_url: str,
    master: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.push import watch as watch_module

    monkeypatch.setattr(watch_module, "MAX_BACKGROUND_WATCHERS", 2)
    users = [master_dovecot.fresh_user() for _ in range(3)]
    async with replicas(1, **master) as [svc]:
        accounts = [await account_of(svc, master_dovecot, u) for u in users]
        for account, user in zip(accounts, users, strict=True):
            await subscribe(redis_url, account, user)
        await eventually(lambda: len(svc.watches.watching()) == 2)
        await asyncio.sleep(ROUNDS * LEASE / 3)
        assert len(svc.watches.watching()) == 2
        # The third is left to another replica.
        async with replicas(1, **master) as [other]:
            await eventually(lambda: len(other.watches.watching()) == 1)
            assert svc.watches.watching() | other.watches.watching() == set(accounts)


async def test_listeners_watchers_kept_for_subscriptions_count_against_the_bound(
    master_dovecot: Dovecot,
    redis_url: str,
    master: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review M2: watchers started for listeners stay while the account is subscribed; once
    their listeners are gone they are kept for subscriptions alone and count like background
    ones, so the bound holds however the watchers started."""
    from gateway.push import watch as watch_module
    from tests.push.watching import principal

    monkeypatch.setattr(watch_module, "MAX_BACKGROUND_WATCHERS", 2)
    users = [master_dovecot.fresh_user() for _ in range(4)]

    def sessions(users: list[str]) -> int:
        return sum(dovecot_sessions(master_dovecot, u) for u in users)

    async with replicas(1, **master) as [svc]:
        owners = [await principal(svc, master_dovecot, u) for u in users]
        accounts = [o.account_id for o in owners]
        for owner, user in zip(owners, users, strict=True):
            await subscribe(redis_url, owner.account_id, user)
        async with contextlib.AsyncExitStack() as listening:
            for owner in owners:
                await listening.enter_async_context(svc.push.listen(owner.account_id, owner, None))
            # With listeners, all four are watched (the bound is for subscriptions alone).
            await eventually(lambda: svc.watches.watching() == set(accounts))
        # The listeners left; the accounts stay subscribed: two watchers are kept.
        await eventually(lambda: len(svc.watches.watching()) == 2)
        await asyncio.sleep(ROUNDS * LEASE / 3)
        assert len(svc.watches.watching()) == 2
        # Dovecot's count: the pool's idle connections of the listeners' logins, and the two
        # watchers' own.
        await eventually(lambda: sessions(users) == svc.pool.stats().total + 2)
        # The others move to a replica with room.
        async with replicas(1, **master) as [other]:
            await eventually(lambda: len(other.watches.watching()) == 2)
            assert svc.watches.watching() | other.watches.watching() == set(accounts)
            pooled = svc.pool.stats().total + other.pool.stats().total
            await eventually(lambda: sessions(users) == pooled + 4)


def logs_in(dovecot: Dovecot, user: str) -> bool:
    conn = imaplib.IMAP4(LOOPBACK, dovecot.imap_port)
    try:
        conn.login(user, dovecot.users[user])
    except imaplib.IMAP4.error:
        return False
    finally:
        conn.logout()
    return True


async def add_passwd_user(dovecot: Dovecot, user: str, password: str) -> None:
    """A user of Dovecot's passwd-file, not one of the t-* users. Dovecot reads the file
    again when it changed, at most once a second: wait until the user logs in."""
    dovecot.users[user] = password
    with (dovecot.root / "passwd").open("a") as passwd:
        passwd.write(f"{user}:{{PLAIN}}{password}::::::\n")
    await eventually(lambda: asyncio.to_thread(logs_in, dovecot, user))


async def remove_passwd_user(dovecot: Dovecot, user: str) -> None:
    """Disable ``user`` upstream (once their login is refused) and cut their sessions."""
    path = dovecot.root / "passwd"
    kept = [line for line in path.read_text().splitlines() if not line.startswith(f"{user}:")]
    path.write_text("".join(f"{line}\n" for line in kept))
    await eventually(lambda: asyncio.to_thread(lambda: not logs_in(dovecot, user)))
    kick = ["doveadm", "-c", str(dovecot.config), "kick", user]
    await asyncio.to_thread(subprocess.run, kick, capture_output=True, check=True)


async def test_one_user_refused_on_reconnect_does_not_stop_the_others(
    master_dovecot: Dovecot,
    redis_url: str,
    master: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Review M3: a user disabled upstream while watched refuses their account only; another
    subscribed user's watcher still starts (no pause of every background login)."""
    caplog.set_level(logging.INFO)
    gone = "u-" + secrets.token_hex(5)
    await add_passwd_user(master_dovecot, gone, "pw-" + secrets.token_hex(4))
    other = master_dovecot.fresh_user()
    async with replicas(1, **master) as [svc]:
        gone_account = await account_of(svc, master_dovecot, gone)
        other_account = await account_of(svc, master_dovecot, other)
        await subscribe(redis_url, gone_account, gone)
        await eventually(lambda: gone_account in svc.watches.watching())
        await eventually(lambda: dovecot_sessions(master_dovecot, gone) == 1)
        await remove_passwd_user(master_dovecot, gone)
        await eventually(lambda: gone_account not in svc.watches.watching())
        await subscribe(redis_url, other_account, other)
        await eventually(lambda: other_account in svc.watches.watching())
        assert "refused the master user" not in caplog.text
        logins = svc.watches._background
        assert logins is not None and not logins.may_try(gone_account)
        await asyncio.sleep(ROUNDS * LEASE / 3)
        assert gone_account not in svc.watches.watching()
        assert dovecot_sessions(master_dovecot, gone) == 0


def test_background_watching_follows_the_settings(master_dovecot: Dovecot, redis_url: str) -> None:
    assert background_module.background_watching(master_settings(master_dovecot, redis_url))
    assert not background_module.background_watching(
        gateway_settings(master_dovecot.url, redis_url)
    )


def logins(caplog: pytest.LogCaptureFixture) -> int:
    """AUTHENTICATE commands the gateway sent upstream (its IMAP log, secrets starred)."""
    return sum(1 for line in sent(caplog) if line.startswith("AUTHENTICATE"))


async def redis_dump(redis_url: str) -> bytes:
    """Every key and value in Redis, as bytes (strings, hashes, zsets, lists, sets)."""
    client = redis.asyncio.Redis.from_url(redis_url)
    out = bytearray()
    try:
        async for key in client.scan_iter(count=1000):
            out += key
            kind = (await client.type(key)).decode()
            if kind == "string":
                out += await client.get(key) or b""
            elif kind == "hash":
                for field, value in (await client.hgetall(key)).items():
                    out += field + value
            elif kind == "zset":
                for member in await client.zrange(key, 0, -1):
                    out += member
            elif kind == "list":
                out += b"".join(await client.lrange(key, 0, -1))
            elif kind == "set":
                out += b"".join(await client.smembers(key))
    finally:
        await client.aclose()
    return bytes(out)
