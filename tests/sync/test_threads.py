"""The gateway's own conversations: subject normalisation and the linking rules."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from gateway.cache.emails import EmailStore
from gateway.cache.index_batch import index_batch
from gateway.cache.store import Store
from gateway.mime.headers import parse_header_block
from gateway.sync.threads import Links, Threader, normalize_subject


@pytest.mark.parametrize(
    ("subject", "normal"),
    [
        ("Plans", "plans"),
        ("Re: Plans", "plans"),
        ("RE: re:  Plans ", "plans"),
        ("Fwd: Re: [dev-list] Plans", "plans"),
        ("AW: Plans", "plans"),
        ("Re[2]: Plans", "plans"),
        ("Plans (fwd)", "plans"),
        ("Réponse", "réponse"),
        ("Re: Re:", ""),
        (None, ""),
    ],
)
def test_subjects_lose_prefixes_tags_case_and_spacing(subject: str | None, normal: str) -> None:
    assert normalize_subject(subject) == normal


def links(raw: bytes) -> Links:
    return Links.from_headers(parse_header_block(raw))


def test_links_put_the_nearest_parent_first() -> None:
    found = links(
        b"Message-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\n"
        b"References: <a@x>\r\n <b@x>\r\nSubject: =?utf-8?q?Re=3A_Pl=C3=A4ne?=\r\n\r\n"
    )
    assert found.message_id == "c@x"
    assert found.parents == ("b@x", "a@x")
    assert found.subject == "pläne"


@pytest.fixture
async def threader(redis_url: str) -> AsyncIterator[Threader]:
    store = Store.from_url(redis_url)
    yield Threader(EmailStore(store.client, "a" + secrets.token_hex(4)))
    await store.close()


async def test_replies_join_and_topic_changes_do_not(threader: Threader) -> None:
    parent = links(b"Message-ID: <p@x>\r\nSubject: Plans\r\n\r\n")
    reply = links(b"Message-ID: <r@x>\r\nIn-Reply-To: <p@x>\r\nSubject: Re: Plans\r\n\r\n")
    lunch = links(b"Message-ID: <l@x>\r\nReferences: <p@x>\r\nSubject: Lunch?\r\n\r\n")
    same_subject = links(b"Message-ID: <u@x>\r\nSubject: Plans\r\n\r\n")
    await threader.prepare([parent, reply, lunch, same_subject])
    first = threader.assign("e1", parent)
    assert threader.assign("e2", reply) == first
    assert threader.assign("e3", lunch) != first
    assert threader.assign("e4", same_subject) not in (first,)


async def test_a_reply_before_its_parent_still_joins(threader: Threader) -> None:
    reply = links(b"Message-ID: <r@x>\r\nIn-Reply-To: <p@x>\r\nSubject: Re: Plans\r\n\r\n")
    await threader.prepare([reply])
    thread = threader.assign("e2", reply)
    refs, subjects = threader.take_writes()
    assert set(refs.values()) == {thread} and subjects == {thread: "plans"}
    # Written before the next batch is prepared, as the index writer does.
    async with index_batch(threader._store) as batch:
        batch.map_thread_refs(refs, subjects)
    parent = links(b"Message-ID: <p@x>\r\nSubject: Plans\r\n\r\n")
    await threader.prepare([parent])
    assert threader.assign("e1", parent) == thread
