"""Sorting by subject reads the RFC 5256 base subject of every message, and anyone can send a
Subject of thousands of "(fwd)" trailers: stripping them one regular-expression search from
the start at a time was quadratic (40 KB took 10 s of the event loop)."""

from __future__ import annotations

import time
from email.message import EmailMessage
from email.policy import SMTP

from gateway.translators.email.filtering import base_subject
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import ok

HOSTILE = "hello" + " (fwd)" * 8_000


def test_trailers_go_in_one_pass() -> None:
    started = time.process_time()
    assert base_subject(HOSTILE) == "hello"
    # A generous bound, 100 times what the linear scan takes on a slow machine; the
    # quadratic one took 10 s here.
    assert time.process_time() - started < 1.0
    assert base_subject("Re: plans (FWD)  (fwd) ") == "plans"
    assert base_subject("plans ( fwd)") == "plans ( fwd)"
    assert base_subject("(fwd)") == ""


async def test_a_folder_with_such_a_subject_sorts(dovecot: Dovecot, jmap: Jmap) -> None:
    imap = dovecot.client(jmap.username)
    for subject in (HOSTILE, "apple", "zebra"):
        msg = EmailMessage()
        msg["From"] = "a@example.org"
        msg["Subject"] = subject
        msg.set_content("x")
        ok(imap.append("INBOX", "", None, msg.as_bytes(policy=SMTP.clone(max_line_length=None))))
    imap.logout()
    found = await jmap.call("Email/query", sort=[{"property": "subject"}])
    got = await jmap.call("Email/get", ids=found["ids"], properties=["subject"])
    assert [e["subject"][:5] for e in got["list"]] == ["apple", "hello", "zebra"]
