"""Subjects and references a stranger wrote: threading stays linear and bounded.

A Subject of 12,000 "Re: " prefixes (48 KB) froze the gateway for 6 s, one of 80,000 (320 KB)
for about 280 s: the normaliser copied the subject once per prefix removed. CPU bounds below
are those of this thread (``time.thread_time``), so other work on the machine does not count,
and are at least 20 times what the linear code takes on a slow machine.
"""

from __future__ import annotations

import time

import pytest

from gateway.mime.headers import as_text, parse_header_block
from gateway.mime.limits import MESSAGE_ID_CHARS, THREAD_PARENTS, THREAD_SUBJECT_CHARS
from gateway.sync.threads import Links, normalize_subject
from tests import hostile_mail
from tests.jmapclient import Jmap
from tests.loopstall import measured_stall
from tests.servers import Dovecot
from tests.translators.mailseed import append

# The CPU one normalisation of a hostile subject may take: the linear code needs about 0.1 s
# for 320 KB; the quadratic one took minutes.
CPU_BOUND = 3.0
# The longest the event loop may wait while a hostile message is synced and read (the
# goal is under 0.1 s; this bound leaves room for a busy test machine, not for the minutes
# the quadratic code stalled).
STALL_BOUND = 1.0


def subject_of(message: bytes) -> str:
    (subject,) = [h.value for h in parse_header_block(message) if h.name == "Subject"]
    return subject


@pytest.mark.parametrize(
    ("subject", "normal"),
    [
        ("Re: " * 80_000 + "hello", "hello"),
        ("Re: [list] Fwd: AW[2]: Re(3): " * 8_000 + "hello (fwd)", "hello"),
        ("hello" + " (fwd)" * 50_000, "hello"),
        ("s" + " " * 300_000 + "end", "s end"),
        ("[" * 300_000, "[" * THREAD_SUBJECT_CHARS),
        ("Re:" * 100_000, ""),
    ],
    ids=["re", "mixed", "trailers", "spaces", "open-tag", "only-prefixes"],
)
def test_a_subject_of_thousands_of_prefixes_is_normalised_in_linear_time(
    subject: str, normal: str
) -> None:
    started = time.thread_time()
    assert normalize_subject(subject) == normal
    assert time.thread_time() - started < CPU_BOUND


def test_normalised_subjects_keep_their_first_255_characters() -> None:
    assert normalize_subject("Re: " + "x" * 1000) == "x" * THREAD_SUBJECT_CHARS


def reference(n: int) -> str:
    return f"ref-{n:06d}.0123456789abcdef@lists.example.net"


def test_links_take_the_nearest_parents_of_a_long_references_field() -> None:
    # 1,500 ids: about 72 KB, the whole field is read.
    links = Links.from_headers(parse_header_block(hostile_mail.huge_references(1_500)))
    # In-Reply-To names the first reference; then References from the nearest back.
    assert list(links.parents) == [reference(0), *map(reference, range(1_499, 1_480, -1))]
    assert len(links.parents) == THREAD_PARENTS


def test_a_references_field_past_100_kib_is_read_up_to_there() -> None:
    """12,000 ids (600 KB) stored 4 MB in Redis; the field keeps its first 100 KiB, and the
    nearest ids of those are taken."""
    links = Links.from_headers(parse_header_block(hostile_mail.huge_references()))
    # " <id>" then "\r\n <id>" for each further one: the ids the first 100 KiB hold whole.
    whole_ids = (100 * 1024 - len(" ") + len("\r\n ")) // len("<" + reference(0) + ">\r\n ")
    assert list(links.parents) == [
        reference(0),
        *map(reference, range(whole_ids - 1, whole_ids - THREAD_PARENTS, -1)),
    ]


def test_an_id_longer_than_a_line_can_hold_is_no_parent() -> None:
    too_long = hostile_mail.long_message_id(MESSAGE_ID_CHARS)
    assert Links.from_headers(parse_header_block(too_long)).parents == ()
    longest = hostile_mail.long_message_id(MESSAGE_ID_CHARS - len("@example.net"))
    assert len(Links.from_headers(parse_header_block(longest)).parents) == 1


async def test_a_reply_to_a_message_of_many_prefixes_joins_its_thread(
    dovecot: Dovecot, jmap: Jmap
) -> None:
    # 12,000 prefixes: the 48 KB subject the review found freezing every request for 6 s.
    hostile = hostile_mail.re_subject(12_000)
    reply = (
        b"X-Corpus-Key: reply\r\nFrom: a@example.org\r\nSubject: Re: hello\r\n"
        b"Message-ID: <reply@example.org>\r\nIn-Reply-To: <re_subject@hostile.example>\r\n"
        b"\r\nok\r\n"
    )
    append(dovecot, jmap.username, {"re_subject": hostile, "reply": reply})
    async with measured_stall() as stall:
        listed = await jmap.call("Email/get", ids=None, properties=["threadId", "subject"])
    assert stall.worst < STALL_BOUND
    threads = {email["threadId"] for email in listed["list"]}
    assert len(listed["list"]) == 2 and len(threads) == 1
    subjects = sorted((email["subject"] for email in listed["list"]), key=len)
    assert subjects == ["Re: hello", as_text(subject_of(hostile))]


async def test_a_subject_longer_than_a_field_is_threaded_by_what_is_kept(
    dovecot: Dovecot, jmap: Jmap
) -> None:
    """80,000 prefixes (320 KB): the field keeps its first 100 KiB, all prefixes, so the
    message's subject for threading is empty; it is synced and read all the same."""
    append(dovecot, jmap.username, {"re_subject": hostile_mail.re_subject()})
    async with measured_stall() as stall:
        (email,) = (await jmap.call("Email/get", ids=None, properties=["subject"]))["list"]
    assert stall.worst < STALL_BOUND
    assert email["subject"] == ("Re: " * (100 * 1024 // 4)).strip()
