"""Email/set moves a folder's mark past its own STOREs only where the upstream confirmed
that nothing else changed the folder (gateway.translators.email.store_proof), so the next
catch-up skips a folder the call alone changed, and never one another client changed.

Two gateways share one Redis: ``writer`` trusts the index for an hour (only Email/set's own
fresh catch-ups ask the upstream); ``reader`` asks the upstream on every request (interval
0), so its catch-up compares the listing with the folder's mark: a mark moved wrongly would
skip the folder and hide the other client's change. The writer reaches the upstream through
a proxy that can hold the checks back, to change mail between the STOREs and the checks.

Ground truth: a plain IMAP session (tests.translators.mailstate) and the upstream commands
the gateways sent (their debug log)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import gateway_settings, running_gateway
from tests.cyrus import Cyrus
from tests.faultproxy import FaultProxy
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import Mail, ok
from tests.translators.test_email_set import ids_by_key
from tests.upstream_log import upstream_commands

TRUSTING = 3600
VISITS = ("EXAMINE", "UID SEARCH")
CHECK = rb"CHANGEDSINCE"


@dataclass
class Rig:
    writer: Jmap
    reader: Jmap
    proxy: FaultProxy
    mail: Mail


@pytest.fixture(params=["dovecot", "cyrus"])
async def rig(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Rig]:
    server: Dovecot | Cyrus = request.getfixturevalue(request.param)
    user = server.fresh_user()
    password = server.users[user]
    async with FaultProxy("127.0.0.1", server.imap_port) as proxy:
        trusting = gateway_settings(proxy.url, redis_url, sync_interval_seconds=TRUSTING)
        asking = gateway_settings(server.url, redis_url, sync_interval_seconds=0)
        async with (
            running_gateway(trusting) as writer_url,
            running_gateway(asking) as reader_url,
            httpx.AsyncClient(base_url=writer_url, timeout=30) as writer_http,
            httpx.AsyncClient(base_url=reader_url, timeout=30) as reader_http,
        ):
            writer = await Jmap(writer_http, user, password).start()
            reader = await Jmap(reader_http, user, password).start()
            mail = Mail(server, user)
            try:
                yield Rig(writer, reader, proxy, mail)
            finally:
                mail.close()


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    yield caplog


def visits(commands: list[str]) -> list[str]:
    return [c for c in commands if c.startswith(VISITS)]


async def keywords(jmap: Jmap, ids: list[str]) -> dict[str, dict[str, bool]]:
    got = await jmap.call("Email/get", ids=ids, properties=["keywords"])
    return {e["id"]: e["keywords"] for e in got["list"]}


async def changed_since(jmap: Jmap, state: str) -> set[str]:
    got = await jmap.call("Email/changes", sinceState=state)
    return {*got["created"], *got["updated"], *got["destroyed"]}


async def seeded(rig: Rig, *keys: str) -> dict[str, str]:
    for key in keys:
        rig.mail.append("INBOX", key)
    return await ids_by_key(rig.writer)


def store(mail: Mail, key: str, flags: str) -> None:
    uid = mail.uids("INBOX", key)[0]
    ok(mail.imap.select("INBOX"))
    ok(mail.imap.uid("STORE", uid, "+FLAGS", flags))


async def test_a_folder_changed_by_the_call_alone_is_not_visited_again(
    rig: Rig, logged: pytest.LogCaptureFixture
) -> None:
    """Marking read, then unread (a removal asks the upstream first): the listing shows
    what the first call's proof predicted, so the folder is not visited. The set holds the
    folder's last message, which the check of the others (``n:*``) names too."""
    ids = await seeded(rig, "a", "b", "c")
    both = [ids["b"], ids["c"]]
    result = await rig.writer.call("Email/set", update={i: {"keywords/$seen": True} for i in both})
    assert result["updated"] == dict.fromkeys(both), result
    upstream_commands(logged)

    result = await rig.writer.call("Email/set", update={i: {"keywords/$seen": None} for i in both})

    assert result["updated"] == dict.fromkeys(both), result
    assert visits(upstream_commands(logged)) == []
    assert rig.mail.folder("INBOX") == {"a": [set()], "b": [set()], "c": [set()]}
    every = [ids["a"], *both]
    assert await keywords(rig.reader, every) == {i: {} for i in every}


async def test_another_clients_change_outside_the_set_before_the_call_shows(rig: Rig) -> None:
    """b is flagged by another client after the index's mark; the call's STORE of a comes
    later, so the folder's HIGHESTMODSEQ afterwards is the call's own answer's: only the
    check of the other messages tells of b."""
    ids = await seeded(rig, "a", "b")
    state = (await rig.writer.call("Email/get", ids=[]))["state"]
    store(rig.mail, "b", "(\\Flagged)")

    result = await rig.writer.call("Email/set", update={ids["a"]: {"keywords/$seen": True}})

    assert result["updated"] == {ids["a"]: None}, result
    assert await changed_since(rig.reader, state) == {ids["a"], ids["b"]}
    assert await keywords(rig.reader, [ids["a"], ids["b"]]) == {
        ids["a"]: {"$seen": True},
        ids["b"]: {"$flagged": True},
    }


async def test_another_clients_change_inside_the_set_before_the_call_is_kept(rig: Rig) -> None:
    """a is flagged by another client; the call marks a read: the STORE's answer carries
    both flags, and the index shows them."""
    ids = await seeded(rig, "a", "b")
    store(rig.mail, "a", "(\\Flagged)")

    result = await rig.writer.call("Email/set", update={ids["a"]: {"keywords/$seen": True}})

    assert result["updated"] == {ids["a"]: None}, result
    assert rig.mail.folder("INBOX") == {"a": [{"\\Seen", "\\Flagged"}], "b": [set()]}
    assert await keywords(rig.reader, [ids["a"], ids["b"]]) == {
        ids["a"]: {"$seen": True, "$flagged": True},
        ids["b"]: {},
    }


@pytest.mark.parametrize("key", ["a", "b"])
async def test_another_clients_change_between_the_stores_and_the_check_shows(
    rig: Rig, key: str
) -> None:
    """The check is held back while another client flags a message of the set (a) or
    another (b): the proof fails, the mark stays, and the next catch-up reads the change."""
    ids = await seeded(rig, "a", "b")
    state = (await rig.writer.call("Email/get", ids=[]))["state"]
    held = rig.proxy.hold(CHECK)
    call = asyncio.create_task(
        rig.writer.call("Email/set", update={ids["a"]: {"keywords/$seen": True}})
    )
    async with asyncio.timeout(10):
        await held.reached.wait()
    await asyncio.to_thread(store, rig.mail, key, "(\\Flagged)")
    held.release()
    async with asyncio.timeout(10):
        result = await call

    assert result["updated"] == {ids["a"]: None}, result
    flagged = {"$flagged": True}
    expected = {"a": {"$seen": True}, "b": {}}
    expected[key] = {**expected[key], **flagged}
    assert await changed_since(rig.reader, state) == {ids["a"], ids[key]}
    assert await keywords(rig.reader, [ids["a"], ids["b"]]) == {
        ids[k]: v for k, v in expected.items()
    }


async def test_a_change_between_two_of_the_calls_stores_shows(rig: Rig) -> None:
    """One call, two STOREs (a marked read, c unflagged). Between them another client
    answers the message the first STORE changed: its mod-sequence is then below the second
    STORE's, which is the folder's HIGHESTMODSEQ afterwards, so only the check of the
    answered messages tells of it."""
    rig.mail.append("INBOX", "a")
    rig.mail.append("INBOX", "c", "\\Flagged")
    ids = await ids_by_key(rig.writer)
    state = (await rig.writer.call("Email/get", ids=[]))["state"]
    first, second = rig.proxy.hold(rb"UID STORE"), rig.proxy.hold(rb"UID STORE")
    patches = {ids["a"]: {"keywords/$seen": True}, ids["c"]: {"keywords/$flagged": None}}
    call = asyncio.create_task(rig.writer.call("Email/set", update=patches))
    async with asyncio.timeout(10):
        await first.reached.wait()
        first.release()
        await second.reached.wait()
    done = await asyncio.to_thread(rig.mail.folder, "INBOX")
    key = "a" if done["a"] == [{"\\Seen"}] else "c"
    await asyncio.to_thread(store, rig.mail, key, "(\\Answered)")
    second.release()
    async with asyncio.timeout(10):
        result = await call

    assert result["updated"] == dict.fromkeys(patches), result
    assert await changed_since(rig.reader, state) == {ids["a"], ids["c"]}
    expected = {"a": {"$seen": True}, "c": {}}
    expected[key] = {**expected[key], "$answered": True}
    assert await keywords(rig.reader, [ids["a"], ids["c"]]) == {
        ids[k]: v for k, v in expected.items()
    }


async def test_a_folder_with_messages_expunged_before_the_mark_is_proven(
    rig: Rig, logged: pytest.LogCaptureFixture
) -> None:
    """UIDs expunged before the index's mark are no change since it: the checks' VANISHED
    (EARLIER) leaves them out, and the proof holds in a folder with gaps."""
    ids = await seeded(rig, "a", "b", "c")
    uid = rig.mail.uids("INBOX", "b")[0]
    ok(rig.mail.imap.select("INBOX"))
    ok(rig.mail.imap.uid("STORE", uid, "+FLAGS.SILENT", "(\\Deleted)"))
    ok(rig.mail.imap.expunge())
    assert ids["b"] not in await keywords(rig.reader, [ids["b"]])
    result = await rig.writer.call("Email/set", update={ids["c"]: {"keywords/$seen": True}})
    assert result["updated"] == {ids["c"]: None}, result
    upstream_commands(logged)

    result = await rig.writer.call("Email/set", update={ids["c"]: {"keywords/$seen": None}})

    assert result["updated"] == {ids["c"]: None}, result
    assert visits(upstream_commands(logged)) == []
    assert rig.mail.folder("INBOX") == {"a": [set()], "c": [set()]}


@pytest.mark.parametrize("last", ["c", "b"])
async def test_another_clients_expunge_after_the_mark_shows(rig: Rig, last: str) -> None:
    """Another client expunges a message after the index's mark, the folder's last (c:
    Cyrus reads ``*`` as the highest UID that still exists, so a check of ``1:*`` heard
    nothing of it) or another (b); then the call marks a read. The check must report the
    expunge, the proof fail, and the reader no longer show the message."""
    ids = await seeded(rig, "a", "b", "c")
    state = (await rig.writer.call("Email/get", ids=[]))["state"]
    uid = rig.mail.uids("INBOX", last)[0]
    ok(rig.mail.imap.select("INBOX"))
    ok(rig.mail.imap.uid("STORE", uid, "+FLAGS.SILENT", "(\\Deleted)"))
    ok(rig.mail.imap.expunge())

    result = await rig.writer.call("Email/set", update={ids["a"]: {"keywords/$seen": True}})

    assert result["updated"] == {ids["a"]: None}, result
    kept = {"a", "b", "c"} - {last}
    assert set(rig.mail.folder("INBOX")) == kept
    got = await keywords(rig.reader, list(ids.values()))
    assert set(got) == {ids[k] for k in kept}
    assert ids[last] in (await rig.reader.call("Email/changes", sinceState=state))["destroyed"]
    listed = await rig.reader.call("Email/query", filter={"inMailbox": await inbox(rig.reader)})
    assert sorted(listed["ids"]) == sorted(ids[k] for k in kept)


async def inbox(jmap: Jmap) -> str:
    got = await jmap.call("Mailbox/get", ids=None, properties=["role"])
    return next(m["id"] for m in got["list"] if m["role"] == "inbox")
