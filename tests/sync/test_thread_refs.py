"""The Message-ID map of the gateway's threads (``thread-refs``) stays bounded and is cleaned.

A 539 KB References field stored 4 MB in Redis for good. Now a message adds its own id and at
most 20 parents, and a thread's entries go when its last email does; read from Redis itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from gateway.cache.keys import AccountKeys
from gateway.cache.thread_table import SUBJECT_OCTETS, ref_hash
from gateway.mime.limits import THREAD_PARENTS
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


def refs(store: redis.Redis, keys: AccountKeys) -> dict[bytes, bytes]:
    """The whole Message-ID map, read bucket by bucket from Redis."""
    found: dict[bytes, bytes] = {}
    for bucket in store.scan_iter(match=keys.thread_ref_bucket("*")):
        found.update(store.hgetall(bucket))
    return found


def ref_to(store: redis.Redis, keys: AccountKeys, ref: bytes) -> bytes | None:
    return refs(store, keys).get(ref)


def table(store: redis.Redis, keys: AccountKeys) -> dict[bytes, bytes]:
    """The whole thread table, read bucket by bucket from Redis."""
    found: dict[bytes, bytes] = {}
    for bucket in store.scan_iter(match=keys.thread_bucket("*")):
        found.update(store.hgetall(bucket))
    return found


def links(store: redis.Redis, keys: AccountKeys, thread: str) -> tuple[int, list[bytes]]:
    """A thread's record count and the thread-refs key hashes listed with it (its links
    fields ``r.T``, ``r2.T``...), read from Redis."""
    fields = table(store, keys)
    value = fields[f"r.{thread}".encode()]
    n = 2
    while f"r{n}.{thread}".encode() in fields:
        value += fields[f"r{n}.{thread}".encode()]
        n += 1
    count, _, rest = value.partition(b":")
    hashes = rest[SUBJECT_OCTETS:]
    return int(count), [hashes[i : i + 4] for i in range(0, len(hashes), 4)]


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
    assert len(refs(store, keys)) == 1 + THREAD_PARENTS
    count, listed = links(store, keys, thread)
    assert (count, sorted(listed)) == (1, sorted(ref_hash(r) for r in refs(store, keys)))
    assert thread_keys(store, keys) == []


async def test_the_last_email_of_a_thread_takes_its_entries_along(
    dovecot: Dovecot, jmap: Jmap, store: redis.Redis
) -> None:
    append(dovecot, jmap.username, {"huge_references": hostile_mail.huge_references()})
    await threads(jmap)
    expunge(dovecot, jmap.username, "huge_references")
    assert await threads(jmap) == {}
    keys = AccountKeys(jmap.account_id)
    assert len(refs(store, keys)) == 0
    # Its head, chunks and links (records, subject, key hashes) went too.
    assert table(store, keys) == {}
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
    assert len(refs(store, keys)) == 0
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
    assert ref_to(store, keys, ref_key("p@example.org")) == thread.encode()
    assert links(store, keys, thread) == (1, [ref_hash(ref_key("p@example.org"))])
