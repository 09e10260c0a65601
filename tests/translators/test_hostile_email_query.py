"""Email/query sorted by subject over subjects a stranger wrote: the RFC 5256 base subject is
found in linear time.

The base subject was cut out by copying the subject once per prefix or trailer removed:
seconds for thousands of "Re: ", close to a minute for 20,000 "(fwd)" trailers, on the loop.
"""

from __future__ import annotations

import time

import pytest

from gateway.translators.email.filtering import base_subject
from tests import hostile_mail
from tests.jmapclient import Jmap
from tests.loopstall import measured_stall
from tests.servers import Dovecot
from tests.translators.mailseed import append

# This thread's CPU for one subject: the linear code needs about 0.03 s.
CPU_BOUND = 2.0
# See tests/translators/test_hostile_email_get.py.
STALL_BOUND = 1.0


@pytest.mark.parametrize(
    ("subject", "base"),
    [
        ("Re: " * 25_000 + "hello", "hello"),
        ("hello" + " (fwd)" * 20_000, "hello"),
        ("[a] " * 25_000 + "b", "b"),
        # The first "[Fwd: ... x]" is a blob with text after it, so it goes first.
        ("[Fwd: " * 10_000 + "x" + "]" * 10_000, "]" * 9_999),
        ("Re: " * 25_000, ""),
    ],
    ids=["leaders", "trailers", "blobs", "wrappers", "only-leaders"],
)
def test_the_base_subject_of_a_hostile_subject_takes_linear_time(subject: str, base: str) -> None:
    started = time.thread_time()
    assert base_subject(subject) == base
    assert time.thread_time() - started < CPU_BOUND


def test_trailers_go_before_leaders_and_blobs_as_rfc5256_orders_them() -> None:
    # RFC 5256 2.1: (2) every trailer, (3) leaders and blobs, (5) the [fwd:] wrapper, again.
    assert base_subject("re[2]:[fwd:fw aFWDa](FWD)(FWD)") == "fw aFWDa"


async def test_sorting_by_subject_over_hostile_subjects(dovecot: Dovecot, jmap: Jmap) -> None:
    subjects = {
        "leaders": b"Re: " * 20_000 + b"b",
        "trailers": b"a" + b" (fwd)" * 15_000,
        "blobs": b"[x] " * 20_000 + b"c",
    }
    append(
        dovecot,
        jmap.username,
        {
            key: b"X-Corpus-Key: " + key.encode() + b"\r\nSubject: " + subject + b"\r\n\r\nx\r\n"
            for key, subject in subjects.items()
        },
    )
    append(dovecot, jmap.username, {"re_subject": hostile_mail.re_subject()})
    await jmap.call("Email/get", ids=None, properties=["subject"])
    async with measured_stall() as stall:
        ids = (await jmap.call("Email/query", sort=[{"property": "subject"}]))["ids"]
    assert stall.worst < STALL_BOUND
    listed = await jmap.call("Email/get", ids=ids, properties=["header:X-Corpus-Key:asText"])
    # The 320 KB subject is all prefixes in its first 100 KiB: its base subject is empty.
    assert [e["header:X-Corpus-Key:asText"] for e in listed["list"]] == [
        "re_subject",
        "trailers",
        "leaders",
        "blobs",
    ]
