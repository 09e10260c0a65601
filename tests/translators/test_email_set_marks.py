"""After Email/set's STOREs a change another client made to the folder meanwhile is never
lost. A STORE's answers cannot prove the folder changed by this call alone: a message the
STORE leaves as it was is answered with its own mod-sequence, which may be another client's
(RFC 7162 3.1.3). The folder's mark moves past the call's STOREs only when the upstream's
own report of every change since the mark shows nothing else (store_proof; the cases where
that proof holds and where it must fail are in test_email_set_proof.py); here it must fail,
and the next catch-up visits the folder.

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


async def test_a_change_sharing_a_no_op_answers_mod_sequence_is_not_lost(
    trusting: Jmap, mail: Mail, caplog: pytest.LogCaptureFixture
) -> None:
    """Another client marks a and b read in one STORE (one mod-sequence, M+1); the index does
    not know yet. Marking a read through the gateway changes nothing upstream, and its
    answer carries a's mod-sequence M+1, as if the gateway's STORE had made it. The next
    catch-up must still visit the folder and find b read. (Dovecot answers no FETCH for a
    message a STORE leaves as it was, and the gateway then looks again itself; a server
    that answers one must not make the gateway skip b either.)"""
    for key in ("a", "b", "c"):
        mail.append("INBOX", key)
    ids = await ids_by_key(trusting)
    assert await inbox_unread(trusting) == 3
    uids = [mail.uids("INBOX", key)[0] for key in ("a", "b")]
    ok(mail.imap.select("INBOX"))
    ok(mail.imap.uid("STORE", ",".join(map(str, uids)), "+FLAGS", "(\\Seen)"))
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    upstream_commands(caplog)

    result = await trusting.call("Email/set", update={ids["a"]: {"keywords/$seen": True}})

    assert result["updated"] == {ids["a"]: None}, result
    # Removing a keyword asks the upstream first (_needs_fresh): the folder is visited.
    result = await trusting.call("Email/set", update={ids["c"]: {"keywords/$flagged": None}})
    assert result["updated"] == {ids["c"]: None}, result
    assert visits(upstream_commands(caplog)) != []
    assert mail.folder("INBOX") == {"a": [{"\\Seen"}], "b": [{"\\Seen"}], "c": [set()]}
    assert await keywords(trusting, [ids["a"], ids["b"]]) == {
        ids["a"]: {"$seen": True},
        ids["b"]: {"$seen": True},
    }
    assert await inbox_unread(trusting) == 1


async def test_a_flag_set_by_another_client_in_between_is_still_read(
    trusting: Jmap, mail: Mail, caplog: pytest.LogCaptureFixture
) -> None:
    """The other client's \\Flagged leaves UNSEEN as it was; the folder is still visited."""
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
    made meanwhile is visited and unflagged, or the update is not reported done."""
    mail.append("INBOX", "a")
    ids = await ids_by_key(trusting)
    await trusting.call("Email/set", update={ids["a"]: {"keywords/$seen": True}})
    mail.copy("INBOX", "a", "Archive")

    result = await trusting.call("Email/set", update={ids["a"]: {"keywords/$seen": None}})

    assert result["updated"] == {ids["a"]: None}, result
    assert mail.folder("INBOX") == {"a": [set()]}
    assert mail.folder("Archive") == {"a": [set()]}
    assert await keywords(trusting, [ids["a"]]) == {ids["a"]: {}}
