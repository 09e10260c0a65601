"""The Message-ID map of the gateway's threads (``thread-refs``) stays bounded and is cleaned.

A 539 KB References field stored 4 MB in Redis for good. Now a message adds its own id and at
most 20 parents, and a thread's entries go when its last email does; read from Redis itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from gateway.cache.keys import AccountKeys
from gateway.mime.limits import THREAD_PARENTS
from gateway.sync.emails import LINKS_FIELD
from gateway.sync.threads import ref_key
from tests import hostile_mail
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailseed import append


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def message(key: str, subject: str, parents: tuple[str, ...] = ()) -> bytes:
    references = b"References: " + " ".join(f"<{p}@example.org>" for p in parents).encode()
    return (
        f"X-Corpus-Key: {key}\r\nFrom: a@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{key}@example.org>\r\n".encode()
        + (references + b"\r\n" if parents else b"")
        + b"\r\nbody\r\n"
    )


def expunge(dovecot: Dovecot, user: str, key: str) -> None:
    imap = dovecot.client(user)
    try:
        imap.select("INBOX")
        uids = imap.uid("SEARCH", "HEADER", "X-Corpus-Key", key)[1][0].split()
        assert len(uids) == 1
        imap.uid("STORE", uids[0], "+FLAGS", "(\\Deleted)")
        imap.expunge()
    finally:
        imap.logout()


def thread_keys(store: redis.Redis, keys: AccountKeys) -> list[bytes]:
    """Per-thread key sets, as index format 1 kept them: none are left."""
    return list(store.scan_iter(match=keys.thread_keys("*")))


def links(store: redis.Redis, keys: AccountKeys, thread: str) -> tuple[int, list[bytes]]:
    """A thread's record count and the thread-refs keys listed with it, read from Redis."""
    value = store.hget(keys.thread_members, thread)
    assert isinstance(value, bytes)
    count, _, refs = value.partition(b":")
    return int(count), [refs[i : i + 12] for i in range(0, len(refs), 12)]


async def threads(jmap: Jmap) -> dict[str, str]:
    """Corpus key -> thread id, after a catch-up."""
    listed = await jmap.call(
        "Email/get", ids=None, properties=["threadId", "header:X-Corpus-Key:asText"]
    )
    return {e["header:X-Corpus-Key:asText"]: e["threadId"] for e in listed["list"]}


async def test_a_huge_references_field_adds_at_most_20_parents(
    dovecot: Dovecot, jmap: Jmap, store: redis.Redis
) -> None:
    append(dovecot, jmap.username, {"huge_references": hostile_mail.huge_references()})
    (thread,) = (await threads(jmap)).values()
    keys = AccountKeys(jmap.account_id)
    # Its own Message-ID and the parents it names, nothing more (it was 12,001 entries).
    assert store.hlen(keys.thread_refs) == 1 + THREAD_PARENTS
    count, refs = links(store, keys, thread)
    assert (count, sorted(refs)) == (1, sorted(store.hkeys(keys.thread_refs)))
    assert thread_keys(store, keys) == []


async def test_the_last_email_of_a_thread_takes_its_entries_along(
    dovecot: Dovecot, jmap: Jmap, store: redis.Redis
) -> None:
    append(dovecot, jmap.username, {"huge_references": hostile_mail.huge_references()})
    await threads(jmap)
    expunge(dovecot, jmap.username, "huge_references")
    assert await threads(jmap) == {}
    keys = AccountKeys(jmap.account_id)
    assert store.hlen(keys.thread_refs) == 0
    assert store.hlen(keys.thread_subjects) == 0
    assert store.hlen(keys.thread_members) == 0
    assert thread_keys(store, keys) == []


async def test_ids_named_by_emails_still_there_keep_finding_their_thread(
    dovecot: Dovecot, jmap: Jmap, store: redis.Redis
) -> None:
    user = jmap.username
    append(dovecot, user, {"p": message("p", "Plans"), "r": message("r", "Re: Plans", ("p",))})
    first = await threads(jmap)
    assert first["p"] == first["r"]
    # The parent goes; its id, written when it (or the reply) arrived, still leads to the
    # thread the reply is in, so a late answer to the parent joins it.
    expunge(dovecot, user, "p")
    append(dovecot, user, {"late": message("late", "Re: Plans", ("p",))})
    second = await threads(jmap)
    assert second == {"r": first["r"], "late": first["r"]}
    keys = AccountKeys(jmap.account_id)
    assert links(store, keys, first["r"])[0] == 2
    expunge(dovecot, user, "r")
    expunge(dovecot, user, "late")
    assert await threads(jmap) == {}
    assert store.hlen(keys.thread_refs) == 0
    assert thread_keys(store, keys) == []


async def test_a_move_is_no_last_copy(dovecot: Dovecot, jmap: Jmap, store: redis.Redis) -> None:
    user = jmap.username
    append(dovecot, user, {"p": message("p", "Plans")})
    (thread,) = (await threads(jmap)).values()
    imap = dovecot.client(user)
    try:
        imap.select("INBOX")
        assert imap.uid("MOVE", "1:*", "Archive")[0] == "OK"
    finally:
        imap.logout()
    assert await threads(jmap) == {"p": thread}
    keys = AccountKeys(jmap.account_id)
    assert store.hget(keys.thread_refs, ref_key("p@example.org")) == thread.encode()
    assert links(store, keys, thread) == (1, [ref_key("p@example.org")])


async def test_an_index_made_before_counts_its_threads_once_and_drops_orphans(
    dovecot: Dovecot, jmap: Jmap, store: redis.Redis
) -> None:
    user = jmap.username
    append(dovecot, user, {"p": message("p", "Plans"), "r": message("r", "Re: Plans", ("p",))})
    (thread,) = set((await threads(jmap)).values())
    keys = AccountKeys(jmap.account_id)
    # As an earlier version left it: no counts, no key sets, and an entry of a thread whose
    # emails were expunged meanwhile.
    store.delete(keys.thread_members, *thread_keys(store, keys))
    store.hdel(keys.meta, LINKS_FIELD)
    store.hset(keys.thread_refs, ref_key("gone@example.org"), "tgone")
    store.hset(keys.thread_subjects, "tgone", "gone")
    append(dovecot, user, {"next": message("next", "Other")})
    await threads(jmap)
    count, refs = links(store, keys, thread)
    assert count == 2 and sorted(refs) == sorted(
        [ref_key("p@example.org"), ref_key("r@example.org")]
    )
    assert store.hget(keys.thread_refs, ref_key("gone@example.org")) is None
    assert store.hget(keys.thread_subjects, "tgone") is None
    expunge(dovecot, user, "p")
    expunge(dovecot, user, "r")
    await threads(jmap)
    assert store.hget(keys.thread_refs, ref_key("p@example.org")) is None
