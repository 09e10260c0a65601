"""Delivery reports found by the catch-up update the submissions they report on.

The reports are the ones Postfix 3.7.11 really sent (tests/mime/dsn/), put into the user's
INBOX with a plain imaplib APPEND; the submissions are written to the account's store as the
sending code writes them. The catch-up runs as a push watcher would run it, without a request.
What the gateway sends upstream is read from its debug log.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from gateway.cache.account import AccountIndex
from gateway.cache.store import Store
from gateway.cache.submissions import DeliveryStatus, SubmissionRecord
from gateway.config import Settings
from gateway.credentials import Credentials
from gateway.imap.pool import ImapPool
from gateway.mime.dsn import DeliveryReport, RecipientReport
from gateway.sync.catch_up import CatchUp
from gateway.sync.reports import MAX_DSN_BLOBS, apply_report
from gateway.upstream import imap_pool
from tests.cyrus import Cyrus
from tests.servers import Dovecot
from tests.translators.witness import Witness
from tests.upstream_log import upstream_commands

SAMPLES = Path(__file__).parent.parent / "mime" / "dsn"


def blob_id(email_id: str) -> str:
    return f"M{email_id}"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes().replace(b"\n", b"\r\n")


def sent(
    submission_id: str,
    *,
    envid: str | None,
    message_id: str,
    recipients: tuple[str, ...] = ("bob@example.com",),
) -> SubmissionRecord:
    """A submission as the sending code keeps it after the server accepted every recipient."""
    return SubmissionRecord(
        id=submission_id,
        identity_id="I1",
        email_id="e1",
        thread_id="t1",
        envelope={
            "mailFrom": {"email": "alice@example.com", "parameters": None},
            "rcptTo": [{"email": r, "parameters": None} for r in recipients],
        },
        send_at="2026-12-07T09:00:00Z",
        undo_status="final",
        delivery_status={r: DeliveryStatus("250 2.1.5 Ok", "queued") for r in recipients},
        message_id=message_id,
        envid=envid,
        finished_at=time.time(),
    )


@dataclass
class Account:
    user: str
    index: AccountIndex
    pool: ImapPool
    dovecot: Dovecot | Cyrus
    catch_up: CatchUp

    def append(self, data: bytes, folder: str = "INBOX") -> None:
        with Witness(self.dovecot, self.user) as witness:
            witness.ok(witness.imap.append(folder, "()", None, data))

    async def sync(self) -> None:
        login = await self.pool.login(Credentials(self.user, self.dovecot.users[self.user]))
        assert await self.catch_up.run(self.index, lambda: self.pool.connection(login), fresh=True)

    async def email_ids(self, folder: str = "INBOX") -> list[str]:
        """The folder's email ids in UID order."""
        mailboxes = await self.index.mailboxes.load()
        (mailbox_id,) = [m.id for m in mailboxes.values() if m.name == folder]
        uids = await self.index.emails.uid_map(mailbox_id)
        return [uids[uid] for uid in sorted(uids)]

    async def record(self, submission_id: str) -> SubmissionRecord:
        return (await self.index.submissions.get([submission_id]))[submission_id]


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(redis_url)
    yield store
    await store.close()


@pytest.fixture
async def pool(dovecot: Dovecot, redis_url: str) -> AsyncIterator[ImapPool]:
    pool = imap_pool(Settings(imap_url=dovecot.url, redis_url=redis_url))
    yield pool
    await pool.close()


@pytest.fixture
def account(dovecot: Dovecot, store: Store, pool: ImapPool) -> Account:
    return new_account(dovecot, store, pool)


def new_account(dovecot: Dovecot, store: Store, pool: ImapPool, *, reports: bool = True) -> Account:
    index = AccountIndex.of(store.client, "a" + secrets.token_hex(6))
    catch_up = CatchUp(interval=0, report_blob_id=blob_id if reports else None)
    return Account(dovecot.fresh_user(), index, pool, dovecot, catch_up)


async def test_a_relayed_report_marks_the_recipient_delivered(account: Account) -> None:
    await account.index.submissions.create(
        sent("Sa", envid="Sub-abc123", message_id="<m1.abc@example.com>")
    )
    await account.sync()
    account.append(sample("postfix-relayed.eml"))
    await account.sync()

    record = await account.record("Sa")
    (report_email,) = await account.email_ids()
    assert record.delivery_status == {
        "bob@example.com": DeliveryStatus(
            "250 2.0.0 <bob@example.com> c6syDPB1FmtFBQAAg+zDdQ Saved", "yes"
        )
    }
    assert record.dsn_blob_ids == (blob_id(report_email),)
    assert record.undo_status == "final"


async def test_on_cyrus_with_its_own_email_ids(cyrus: Cyrus, store: Store, redis_url: str) -> None:
    """Cyrus names its emails (OBJECTID): a report found there is matched the same way."""
    pool = imap_pool(Settings(imap_url=cyrus.url, redis_url=redis_url))
    try:
        account = new_account(cyrus, store, pool)
        await account.index.submissions.create(
            sent(
                "Sk",
                envid="Sub-def456",
                message_id="<m2.def@example.com>",
                recipients=("nobody@example.com",),
            )
        )
        account.append(sample("postfix-failed-returned-full.eml"))
        await account.sync()
        record = await account.record("Sk")
        (report_email,) = await account.email_ids()
        assert record.dsn_blob_ids == (blob_id(report_email),)
        assert record.delivery_status is not None
        assert record.delivery_status["nobody@example.com"].delivered == "no"
    finally:
        await pool.close()


async def test_a_bounce_marks_the_recipient_failed_with_the_servers_reply(
    account: Account,
) -> None:
    await account.index.submissions.create(
        sent(
            "Sb",
            envid="Sub-mix789",
            message_id="<m3.mix@example.com>",
            recipients=("bob@example.com", "nobody@example.com"),
        )
    )
    account.append(sample("postfix-two-recipients-relayed.eml"))
    account.append(sample("postfix-two-recipients-failed.eml"))
    await account.sync()

    record = await account.record("Sb")
    assert record.delivery_status is not None
    assert record.delivery_status["bob@example.com"].delivered == "yes"
    nobody = record.delivery_status["nobody@example.com"]
    assert nobody.delivered == "no"
    assert nobody.smtp_reply == (
        "550 5.1.1 <nobody@example.com> User doesn't exist: nobody@example.com"
    )
    # Both reports, in the order they arrived (RFC 8621 7: oldest first).
    assert record.dsn_blob_ids == tuple(blob_id(e) for e in await account.email_ids())


async def test_envid_matches_without_case_else_the_returned_message_id(
    account: Account,
) -> None:
    """Some servers upper-case the ENVID they were given; a report without one is matched by
    the Message-ID of the message it returns."""
    await account.index.submissions.create(
        sent(
            "Sc",
            envid="Sub-def456",
            message_id="<other@example.com>",
            recipients=("nobody@example.com",),
        )
    )
    await account.index.submissions.create(
        sent(
            "Sd",
            envid="Sub-zzz",
            message_id="<m4.noenvid@example.com>",
            recipients=("nobody@example.com",),
        )
    )
    account.append(sample("postfix-failed-returned-full.eml").replace(b"Sub-def456", b"SUB-DEF456"))
    account.append(sample("postfix-failed-without-envid.eml"))
    await account.sync()

    first, second = await account.email_ids()
    assert (await account.record("Sc")).dsn_blob_ids == (blob_id(first),)
    assert (await account.record("Sd")).dsn_blob_ids == (blob_id(second),)
    for submission_id in ("Sc", "Sd"):
        statuses = (await account.record(submission_id)).delivery_status
        assert statuses is not None and statuses["nobody@example.com"].delivered == "no"


async def test_no_submissions_no_extra_upstream_work(
    dovecot: Dovecot, store: Store, pool: ImapPool, caplog: pytest.LogCaptureFixture
) -> None:
    """An account that never sent through the gateway: its catch-up sends the very commands
    it sends where reports are not looked for at all, reports in its INBOX or not."""
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    looking = new_account(dovecot, store, pool)
    blind = new_account(dovecot, store, pool, reports=False)
    sent_by: dict[str, list[str]] = {}
    for name, account in (("looking", looking), ("blind", blind)):
        await account.sync()
        account.append(sample("postfix-relayed.eml"))
        upstream_commands(caplog)
        await account.sync()
        # Numbers aside: the two accounts' UIDVALIDITY and modseqs may differ (made a second
        # apart); the commands sent are what must not.
        sent_by[name] = [
            re.sub(r"\d+", "N", c) for c in upstream_commands(caplog) if not c.startswith("LOGIN")
        ]
    assert sent_by["looking"] == sent_by["blind"]
    assert not any("HEADER" in c and "report" in c for c in sent_by["looking"])


async def test_with_submissions_one_search_and_one_fetch(
    account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    await account.index.submissions.create(
        sent("Se", envid="Sub-abc123", message_id="<m1.abc@example.com>")
    )
    await account.sync()
    with Witness(account.dovecot, account.user) as witness:
        witness.append("INBOX", "an ordinary message")
    upstream_commands(caplog)
    await account.sync()
    # New mail but no report among it: the search finds nothing, nothing is fetched for it.
    commands = upstream_commands(caplog)
    assert len([c for c in commands if "HEADER Content-Type report" in c]) == 1
    assert not [c for c in commands if "BODY.PEEK[]<0." in c]

    account.append(sample("postfix-relayed.eml"))
    await account.sync()
    commands = upstream_commands(caplog)
    assert len([c for c in commands if "HEADER Content-Type report" in c]) == 1
    assert len([c for c in commands if "BODY.PEEK[]<0." in c]) == 1
    assert (await account.record("Se")).dsn_blob_ids != ()

    # Nothing new: the folder is not even opened, no report looked for.
    await account.sync()
    assert not [c for c in upstream_commands(caplog) if "report" in c]


async def test_a_report_for_another_users_submission_changes_nothing(
    dovecot: Dovecot, store: Store, pool: ImapPool
) -> None:
    """Mallory mails herself a report naming Alice's envelope id and Message-ID: matching
    looks in Mallory's own submissions only."""
    alice = new_account(dovecot, store, pool)
    mallory = new_account(dovecot, store, pool)
    await alice.index.submissions.create(
        sent("Sf", envid="Sub-abc123", message_id="<m1.abc@example.com>")
    )
    before = await alice.record("Sf")
    mallory.append(sample("postfix-relayed.eml"))
    await mallory.sync()
    await alice.sync()
    assert await alice.record("Sf") == before
    assert await mallory.index.submissions.all_ids() == []


async def test_a_report_naming_none_of_the_recipients_changes_nothing(
    account: Account,
) -> None:
    """A report with the right envelope id about someone the submission was not sent to (a
    forgery, or a report of another transaction) does not touch the submission."""
    await account.index.submissions.create(
        sent(
            "Sg",
            envid="Sub-abc123",
            message_id="<m1.abc@example.com>",
            recipients=("carol@example.com",),
        )
    )
    before = await account.record("Sg")
    account.append(sample("postfix-relayed.eml"))
    await account.sync()
    assert await account.record("Sg") == before


async def test_a_report_copied_to_another_folder_is_not_read_again(
    account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    """A copy of a known email (moved or copied, or the gateway's own move to Sent after
    sending) is not looked at again: the report counts once, and no search is made for it."""
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    await account.index.submissions.create(
        sent("Sh", envid="Sub-abc123", message_id="<m1.abc@example.com>")
    )
    account.append(sample("postfix-relayed.eml"))
    await account.sync()
    with Witness(account.dovecot, account.user) as witness:
        witness.create("Reports")
        witness.ok(witness.imap.select("INBOX"))
        witness.ok(witness.imap.copy("1", "Reports"))
    upstream_commands(caplog)
    await account.sync()
    assert (await account.email_ids("Reports")) == (await account.email_ids("INBOX"))
    assert not [c for c in upstream_commands(caplog) if "report" in c]
    record = await account.record("Sh")
    assert len(record.dsn_blob_ids) == 1


def test_a_delay_keeps_the_recipient_queued_and_never_undoes_an_answer() -> None:
    record = sent("Si", envid="E", message_id="<x@y>", recipients=("a@x", "b@x"))
    assert record.delivery_status is not None
    record = replace(
        record, delivery_status={**record.delivery_status, "b@x": DeliveryStatus("250 ok", "yes")}
    )
    delayed = DeliveryReport(
        "E",
        None,
        (
            RecipientReport("A@X", None, "delayed", "4.4.1", "smtp; 421 4.4.1 try later"),
            RecipientReport("b@x", None, "delayed", "4.4.1", None),
        ),
    )
    after = apply_report(record, delayed, "Mr1")
    assert after is not None and after.delivery_status is not None
    assert after.delivery_status["a@x"] == DeliveryStatus("421 4.4.1 try later", "queued")
    assert after.delivery_status["b@x"] == DeliveryStatus("250 ok", "yes")
    assert after.dsn_blob_ids == ("Mr1",)


def test_report_blob_ids_are_bounded() -> None:
    record = sent("Sj", envid="E", message_id="<x@y>", recipients=("a@x",))
    report = DeliveryReport("E", None, (RecipientReport("a@x", None, "failed", "5.0.0", None),))
    for n in range(MAX_DSN_BLOBS + 5):
        after = apply_report(record, report, f"M{n}")
        assert after is not None
        record = after
    assert len(record.dsn_blob_ids) == MAX_DSN_BLOBS
    assert record.delivery_status == {"a@x": DeliveryStatus("550 5.0.0", "no")}
