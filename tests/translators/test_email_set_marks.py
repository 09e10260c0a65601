"""After Email/set's STOREs the folder's mark moves past them when nothing else changed the
folder upstream (set.py, _moved_mark): removing a keyword next, which needs a fresh look at
the upstream, then costs the listing alone, not a visit of the folder. A change by any other
client in between still makes the folder visited.

Ground truth: a plain IMAP session (tests.translators.mailstate) and the upstream commands
the gateway sent (its debug log)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import Mail, ok
from tests.translators.test_email_set import ids_by_key
from tests.upstream_log import upstream_commands

# Within the sync interval throughout: only Email/set's own fresh catch-ups ask upstream.
TRUSTING = 3600
VISITS = ("EXAMINE", "UID SEARCH", "UID FETCH")


@pytest.fixture
async def trusting(dovecot: Dovecot, redis_url: str) -> AsyncIterator[Jmap]:
    settings = gateway_settings(dovecot.url, redis_url, sync_interval_seconds=TRUSTING)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        user = dovecot.fresh_user()
        yield await Jmap(http, user, dovecot.users[user]).start()


@pytest.fixture
def mail(dovecot: Dovecot, trusting: Jmap) -> Iterator[Mail]:
    client = Mail(dovecot, trusting.username)
    yield client
    client.close()


def visits(commands: list[str]) -> list[str]:
    return [c for c in commands if c.startswith(VISITS)]


async def keywords(jmap: Jmap, ids: list[str]) -> dict[str, dict[str, bool]]:
    got = await jmap.call("Email/get", ids=ids, properties=["keywords"])
    return {e["id"]: e["keywords"] for e in got["list"]}


async def inbox_unread(jmap: Jmap) -> int:
    got = await jmap.call("Mailbox/get", ids=None, properties=["role", "unreadEmails"])
    (unread,) = [m["unreadEmails"] for m in got["list"] if m["role"] == "inbox"]
    return int(unread)


async def test_unread_after_read_costs_no_visit_of_the_folder(
    trusting: Jmap, mail: Mail, caplog: pytest.LogCaptureFixture
) -> None:
    for key in ("a", "b", "c"):
        mail.append("INBOX", key)
    ids = await ids_by_key(trusting)
    chosen = [ids["a"], ids["b"]]
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    for value in (True, None, True, None):
        upstream_commands(caplog)

        result = await trusting.call(
            "Email/set", update={i: {"keywords/$seen": value} for i in chosen}
        )

        assert result["updated"] == dict.fromkeys(chosen), result
        sent = upstream_commands(caplog)
        assert any(c.startswith("UID STORE") for c in sent), sent
        if value is None:
            # The fresh catch-up removing a keyword needs: the listing matched the marks.
            assert any(c.startswith("LIST") for c in sent), sent
        assert visits(sent) == [], sent
        flags = {"\\Seen"} if value else set()
        assert mail.folder("INBOX") == {"a": [flags], "b": [flags], "c": [set()]}
        expected = {"$seen": True} if value else {}
        assert await keywords(trusting, chosen) == dict.fromkeys(chosen, expected)
        assert await inbox_unread(trusting) == (1 if value else 3)


async def test_a_flag_set_by_another_client_in_between_is_still_read(
    trusting: Jmap, mail: Mail, caplog: pytest.LogCaptureFixture
) -> None:
    """The other client's \\Flagged leaves UNSEEN as the mark foresaw; only its
    mod-sequence tells, and the folder is visited."""
    for key in ("a", "b"):
        mail.append("INBOX", key)
    ids = await ids_by_key(trusting)
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    await trusting.call("Email/set", update={ids["a"]: {"keywords/$seen": True}})
    uid = mail.uids("INBOX", "b")[0]
    ok(mail.imap.select("INBOX"))
    ok(mail.imap.uid("STORE", uid, "+FLAGS", "(\\Flagged)"))
    assert mail.folder("INBOX") == {"a": [{"\\Seen"}], "b": [{"\\Flagged"}]}
    upstream_commands(caplog)

    result = await trusting.call("Email/set", update={ids["a"]: {"keywords/$seen": None}})

    assert result["updated"] == {ids["a"]: None}, result
    assert visits(upstream_commands(caplog)) != []
    assert await keywords(trusting, [ids["a"], ids["b"]]) == {
        ids["a"]: {},
        ids["b"]: {"$flagged": True},
    }


async def test_a_copy_made_in_between_loses_the_keyword_too(trusting: Jmap, mail: Mail) -> None:
    """keywords are the union of the copies' flags (_needs_fresh): a copy another client
    made after the mark moved is visited and unflagged, or the update is not reported done."""
    mail.append("INBOX", "a")
    ids = await ids_by_key(trusting)
    await trusting.call("Email/set", update={ids["a"]: {"keywords/$seen": True}})
    mail.copy("INBOX", "a", "Archive")

    result = await trusting.call("Email/set", update={ids["a"]: {"keywords/$seen": None}})

    assert result["updated"] == {ids["a"]: None}, result
    assert mail.folder("INBOX") == {"a": [set()]}
    assert mail.folder("Archive") == {"a": [set()]}
    assert await keywords(trusting, [ids["a"]]) == {ids["a"]: {}}
