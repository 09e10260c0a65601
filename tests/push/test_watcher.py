"""One account's watcher against a real Dovecot (NOTIFY) and a real Cyrus (IDLE only).

A plain imaplib session changes the mailbox; the journal (the one path to push) must hear the
watcher's catch-up commit the matching types, with no request made. The upstream counts the
watcher's connections itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from gateway import services
from gateway.auth import Principal
from gateway.cache.account import AccountIndex
from gateway.cache.changes import AccountState
from gateway.metrics import Metrics
from gateway.push.watcher import watch_account
from tests.conftest import gateway_settings
from tests.cyrus import Cyrus
from tests.faultproxy import FaultProxy
from tests.push.watching import (
    Heard,
    catch_ups,
    dovecot_sessions,
    eventually,
    hearing,
    idles,
    imap,
    message,
    principal,
    sent,
    signals_of,
)
from tests.servers import Dovecot
from tests.upstream_log import upstream_commands


@contextlib.asynccontextmanager
async def serving(
    imap_url: str, redis_url: str, **settings: object
) -> AsyncIterator[services.Services]:
    svc = await services.start(gateway_settings(imap_url, redis_url, **settings), Metrics())
    try:
        yield svc
    finally:
        await services.stop(svc)


@contextlib.asynccontextmanager
async def watching(svc: services.Services, who: Principal) -> AsyncIterator[list[Principal]]:
    """Run the watcher of ``who``'s account until the block ends; yields the credentials it
    reported refused. Waits for its first catch-up."""
    refused: list[Principal] = []
    until = asyncio.Event()
    before = catch_ups(svc)
    task = asyncio.create_task(
        watch_account(svc, who.account_id, who, until, on_auth_failed=refused.append)
    )
    try:
        await eventually(lambda: catch_ups(svc) > before or task.done())
        yield refused
    finally:
        until.set()
        await asyncio.wait_for(task, 15)


def append(mailbox: str, subject: str, flags: str = "") -> object:
    return lambda c: c.append(mailbox, flags, None, message(subject))


async def test_dovecot_changes_reach_the_journal_through_the_watcher(
    dovecot: Dovecot, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    user = dovecot.fresh_user()
    async with serving(dovecot.url, redis_url) as svc:
        who = await principal(svc, dovecot, user)
        account = who.account_id
        sessions = dovecot_sessions(dovecot, user)
        caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
        with hearing() as heard:
            async with watching(svc, who):
                # One more upstream session for the watcher, as the upstream counts them.
                assert dovecot_sessions(dovecot, user) == sessions + 1
                commands = upstream_commands(caplog)
                assert any(c.startswith("NOTIFY SET (personal (") for c in commands)
                assert any(c.startswith("ENABLE CONDSTORE") for c in commands)

                mark = heard.mark()
                await imap(dovecot, user, append("INBOX", "first"))
                assert {"Email", "Mailbox", "Thread"} <= await heard.until(
                    account, mark, {"Email", "Thread"}
                )

                mark = heard.mark()
                await imap(
                    dovecot,
                    user,
                    lambda c: (c.select("INBOX"), c.store("1", "+FLAGS", "\\Flagged")),
                )
                assert "Email" in await heard.until(account, mark, {"Email"})

                mark = heard.mark()
                await imap(dovecot, user, lambda c: c.create("Projects"))
                assert "Mailbox" in await heard.until(account, mark, {"Mailbox"})

                mark = heard.mark()
                await imap(
                    dovecot,
                    user,
                    lambda c: (c.select("INBOX"), c.store("1", "+FLAGS", "\\Deleted"), c.expunge()),
                )
                assert {"Email", "Thread"} <= await heard.until(account, mark, {"Email", "Thread"})
                await states_match(svc, account, heard)
            # The watcher left IDLE with DONE and logged out: not cut.
            assert sent(caplog)[-2:] == ["DONE", "LOGOUT"]
            await eventually(lambda: dovecot_sessions(dovecot, user) == sessions)
        assert svc.pool.stats().watch == 0


async def states_match(svc: services.Services, account: str, heard: Heard) -> None:
    """What the journal announced last is the index's state (what Foo/get says)."""
    state = AccountState(svc.store.client, account)
    for data_type, announced in heard.latest(account).items():
        assert await state.state(data_type) == announced


async def test_a_change_made_during_the_catch_up_still_arrives(
    dovecot: Dovecot, redis_url: str
) -> None:
    """contracts15 Q3: the catch-up runs on the watcher's connection, out of IDLE; a change
    made while it runs (after its LIST) must still be caught up."""
    user = dovecot.fresh_user()
    await imap(dovecot, user, lambda c: c.create("Other"))
    async with (
        FaultProxy("127.0.0.1", dovecot.imap_port) as proxy,
        serving(proxy.url, redis_url) as svc,
    ):
        who = await principal(svc, dovecot, user)
        with hearing() as heard:
            async with watching(svc, who):
                # The next catch-up is held at its first folder read, after its LIST.
                hold = proxy.hold(rb"^\S+ (SELECT|EXAMINE) ")
                mark = heard.mark()
                await imap(dovecot, user, append("INBOX", "one"))
                await asyncio.wait_for(hold.reached.wait(), 15)
                await imap(dovecot, user, append("Other", "two"))
                hold.release()
                await heard.until(who.account_id, mark, {"Email"})
                index_state = AccountState(svc.store.client, who.account_id)

                async def both_indexed() -> bool:
                    records = await AccountIndex.of(
                        svc.store.client, who.account_id
                    ).mailboxes.load()
                    totals = {r.name: r.total for r in records.values()}
                    return totals.get("INBOX") == 1 and totals.get("Other") == 1

                await eventually(both_indexed)
                assert await index_state.state("Email") == heard.latest(who.account_id)["Email"]


async def test_a_refused_notify_set_falls_back_to_idle_and_the_poll(
    dovecot: Dovecot, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that offers NOTIFY but refuses the NOTIFY SET (here Dovecot, handed an event
    it does not know) is watched as one without NOTIFY: INBOX in IDLE, the rest by the poll,
    on the same connection, instead of reconnecting to be refused again."""
    user = dovecot.fresh_user()
    await imap(dovecot, user, lambda c: c.create("Other"))
    async with (
        FaultProxy("127.0.0.1", dovecot.imap_port) as proxy,
        serving(proxy.url, redis_url, push_poll_seconds=2) as svc,
    ):
        proxy.rewrite(rb"NOTIFY SET \(personal \(", b"NOTIFY SET (personal (NoSuchEvent ")
        who = await principal(svc, dovecot, user)
        caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
        sessions = dovecot_sessions(dovecot, user)
        with hearing() as heard:
            async with watching(svc, who):
                await eventually(lambda: idles(caplog) > 0)
                assert "refused NOTIFY SET" in caplog.text
                assert any(c.startswith("EXAMINE INBOX") for c in upstream_commands(caplog))
                mark = heard.mark()
                await imap(dovecot, user, append("Other", "other"))
                assert "Email" in await heard.until(who.account_id, mark, {"Email"})
                # Still the one connection it started with.
                assert dovecot_sessions(dovecot, user) == sessions + 1


async def test_cyrus_inbox_at_once_other_folders_within_the_poll_period(
    cyrus: Cyrus, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No NOTIFY on Cyrus: EXAMINE INBOX and IDLE (INBOX changes are signalled), plus a
    catch-up every GATEWAY_PUSH_POLL_SECONDS for the rest (cyrus-idle-facts.md)."""
    user = cyrus.fresh_user()
    await imap(cyrus, user, lambda c: c.create("Other"))
    async with serving(cyrus.url, redis_url, push_poll_seconds=2) as svc:
        who = await principal(svc, cyrus, user)
        caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
        with hearing() as heard:
            async with watching(svc, who):
                await eventually(lambda: idles(caplog) > 0)
                signals = signals_of(svc)
                mark = heard.mark()
                await imap(cyrus, user, append("INBOX", "inbox"))
                assert "Email" in await heard.until(who.account_id, mark, {"Email"})
                # The INBOX change came as a signal in IDLE, not by the poll.
                assert signals_of(svc) > signals

                mark = heard.mark()
                await imap(cyrus, user, append("Other", "other"))
                assert "Email" in await heard.until(who.account_id, mark, {"Email"})
                await states_match(svc, who.account_id, heard)
            assert sent(caplog)[-2:] == ["DONE", "LOGOUT"]


async def test_idle_is_restarted_without_a_catch_up(
    dovecot: Dovecot, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """GATEWAY_PUSH_IDLE_RESTART_SECONDS: DONE and IDLE again on the same connection; with
    nothing changed upstream, no catch-up runs."""
    user = dovecot.fresh_user()
    async with serving(dovecot.url, redis_url, push_idle_restart_seconds=0.5) as svc:
        who = await principal(svc, dovecot, user)
        caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
        async with watching(svc, who):
            # After the first IDLE (a stale STATUS may follow NOTIFY SET: one more catch-up).
            await eventually(lambda: idles(caplog) >= 2)
            done = catch_ups(svc)
            await eventually(lambda: idles(caplog) >= 4)
            assert catch_ups(svc) == done
            assert sent(caplog).count("DONE") >= 2
            assert svc.pool.stats().watch == 1
