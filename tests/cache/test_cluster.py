"""Redis Cluster: the URL form, the cache layer and a whole gateway on a real three-node cluster.

What the gateway wrote is checked from outside: a plain client per node (which keys each node
holds) and the IMAP server itself. Tests share one cluster and keep apart by using accounts of
their own (random ids, or fresh IMAP users).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.exceptions import WatchError

from gateway.cache.blobs import UPLOAD_OVERHEAD, BlobStore
from gateway.cache.changes import AccountState
from gateway.cache.chunked_set import chunk_meta, directory
from gateway.cache.connect import BadRedisUrl, parse_cluster_url
from gateway.cache.emails import EmailStore
from gateway.cache.keys import SECRET, AccountKeys
from gateway.cache.limits import ConcurrencyLimiter, TooManyConcurrent
from gateway.cache.locks import LeaseLost, lease
from gateway.cache.store import Store, fixed_secret
from gateway.cache.timed import TimedRedisCluster
from gateway.config import ConfigError, load_settings
from gateway.sync.index_writer import IndexWriter, NewCopy
from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import Jmap
from tests.rediscluster import RedisClusterSet
from tests.servers import Dovecot
from tests.translators.mailstate import KEY, Mail, ok

KEY_PROPERTY = f"header:{KEY}:asText"
Observation = tuple[str, str | None]


@pytest.fixture
async def store(redis_cluster: RedisClusterSet) -> AsyncIterator[Store]:
    store = Store.from_url(redis_cluster.url)
    yield store
    await store.close()


def account_keys_by_node(cluster: RedisClusterSet, account_id: str) -> dict[int, set[str]]:
    """Per node port, the account's keys that node itself holds (KEYS on a plain client)."""
    found = {}
    for node in cluster.nodes:
        with node.client() as client:
            keys = client.keys(f"jg:{{{account_id}}}:*")
        found[node.port] = {key.decode() for key in keys}
    return found


def assert_on_one_node(cluster: RedisClusterSet, account_id: str) -> set[str]:
    """The account's keys are all on the node owning its hash tag's slot, none elsewhere."""
    owner = cluster.owner(AccountKeys(account_id).meta)
    held = account_keys_by_node(cluster, account_id)
    assert held[owner.port], "the owning node holds none of the account's keys"
    assert all(not keys for port, keys in held.items() if port != owner.port), held
    return held[owner.port]


# -- the URL ------------------------------------------------------------------------------------


def test_cluster_urls_name_startup_nodes_and_credentials() -> None:
    url = parse_cluster_url("rediss+cluster://app:p%40ss@n1:7000,[::1]:7001,n3/")
    assert url.nodes == (("n1", 7000), ("::1", 7001), ("n3", 6379))
    assert (url.username, url.password, url.tls) == ("app", "p@ss", True)
    plain = parse_cluster_url("redis+cluster://:pw@n1:7000")
    assert (plain.nodes, plain.username, plain.password, plain.tls) == (
        (("n1", 7000),),
        None,
        "pw",
        False,
    )
    bare = parse_cluster_url("redis+cluster://n1:7000,n2:7000")
    assert (bare.username, bare.password) == (None, None)
    settings = load_settings(imap_url="imap://127.0.0.1:143", redis_url="redis+cluster://n1:7000")
    assert settings.redis_url == "redis+cluster://n1:7000"


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://:hunter2@n1:7000/0",  # a cluster has database 0 alone
        "redis+cluster://:hunter2@n1:7000/1",
        "redis+cluster://:hunter2@n1:port",
        "redis+cluster://:hunter2@n1:7000,",
        "redis+cluster://:hunter2@:7000",
        "redis+cluster://:hunter2@n1:7000?ssl=1",
    ],
)
def test_bad_cluster_urls_are_refused_without_the_password(url: str) -> None:
    with pytest.raises(BadRedisUrl) as refused:
        parse_cluster_url(url)
    assert "hunter2" not in str(refused.value)
    with pytest.raises(ConfigError) as config:
        load_settings(imap_url="imap://127.0.0.1:143", redis_url=url)
    assert "GATEWAY_REDIS_URL" in str(config.value)
    assert "hunter2" not in str(config.value)


# -- the Store and the cache layer ----------------------------------------------------------------


async def test_the_store_talks_to_the_cluster(redis_cluster: RedisClusterSet, store: Store) -> None:
    assert isinstance(store.client, TimedRedisCluster)
    assert await store.ping()
    secret = await store.server_secret()
    assert await store.server_secret() == secret  # made once, then read
    owner = redis_cluster.owner(SECRET)
    for node in redis_cluster.nodes:
        with node.client() as client:
            # KEYS lists what the node itself holds; GET elsewhere would answer MOVED.
            assert client.keys(SECRET) == ([SECRET.encode()] if node is owner else [])
    with owner.client() as client:
        assert client.get(SECRET) == secret


async def test_round_trips_on_a_cluster_are_named_by_command(
    redis_cluster: RedisClusterSet,
) -> None:
    seen: list[Observation] = []
    store = Store.from_url(
        redis_cluster.url, observer=lambda name, _s, fail: seen.append((name, fail))
    )
    client = store.client
    account = "acct-secret-" + secrets.token_hex(4)
    key = f"jg:{{{account}}}:k"
    try:
        await client.set(key, "v")
        async with client.pipeline(transaction=True) as pipe:
            pipe.incr(f"jg:{{{account}}}:n").expire(f"jg:{{{account}}}:n", 60)
            await pipe.execute()
        async with client.pipeline(transaction=False) as pipe:
            pipe.get(key).get(f"jg:{{{account}}}:n")
            await pipe.execute()
        async with client.pipeline(transaction=True) as pipe:
            await pipe.watch(key)
            assert await pipe.get(key) == b"v"
            pipe.multi()
            pipe.set(key, "w")
            await pipe.execute()
        async with client.pipeline(transaction=True) as pipe:
            await pipe.execute()  # nothing queued, nothing sent, nothing reported
    finally:
        await store.close()
    names = [name for name, _ in seen]
    assert names == ["SET", "MULTI", "PIPELINE", "WATCH", "GET", "MULTI"]
    assert all(fail is None for _, fail in seen)
    with redis_cluster.owner(key).client() as node:
        assert node.get(key) == b"w"


async def test_a_lease_lost_between_fence_and_exec_fails_the_exec(
    redis_cluster: RedisClusterSet, store: Store
) -> None:
    account = "a" + secrets.token_hex(4)
    keys = AccountKeys(account)
    lock = keys.lock("emails")
    owner = redis_cluster.owner(lock)
    async with lease(store.client, lock, ttl=60, wait=1) as held:
        async with store.client.pipeline(transaction=True) as pipe:
            await held.fence(pipe)
            pipe.hset(keys.emails, "kept", "1")
            assert await pipe.execute() == [1]
        async with store.client.pipeline(transaction=True) as pipe:
            await held.fence(pipe)
            pipe.hset(keys.emails, "lost", "1")
            # Another process takes the lease, on the node itself, after the WATCH.
            with owner.client() as node:
                node.set(lock, "someone-else")
            with pytest.raises(WatchError):
                await pipe.execute()
        # A fence on a lease already lost refuses before anything is queued.
        async with store.client.pipeline(transaction=True) as pipe:
            with pytest.raises(LeaseLost):
                await held.fence(pipe)
    with owner.client() as node:
        assert node.hgetall(keys.emails) == {b"kept": b"1"}
    assert_on_one_node(redis_cluster, account)


async def test_index_writes_commit_only_while_the_sync_lease_is_held(
    redis_cluster: RedisClusterSet, store: Store
) -> None:
    account = "a" + secrets.token_hex(4)
    emails = EmailStore(store.client, account)
    key = emails.keys.lock("emails")
    async with lease(store.client, key, ttl=60, wait=1) as held:
        writer = IndexWriter(emails, held)
        await writer.add_copies("m1", [NewCopy(1, "e1", [], 0, 10, "t1")])
        assert list(await emails.records(["e1"])) == ["e1"]
        with redis_cluster.owner(key).client() as node:
            node.set(key, "someone-else")
        with pytest.raises(LeaseLost):
            await writer.add_copies("m1", [NewCopy(2, "e2", [], 0, 10, "t2")])
        assert await emails.records(["e2"]) == {}
    held_keys = assert_on_one_node(redis_cluster, account)
    assert {
        emails.keys.record_bucket(0),
        emails.keys.mailbox_numbers,
        emails.keys.uid_bucket("m1", 0),
        emails.keys.changed("Email"),
    } <= held_keys


async def test_the_by_date_chunks_live_on_the_accounts_node_and_answer_windows(
    redis_cluster: RedisClusterSet, store: Store
) -> None:
    """A folder's by-date set split into chunks by the writer: every chunk, the directory
    and the count on the node owning the account's slot; the list window read in one script
    there, newest first."""
    account = "a" + secrets.token_hex(4)
    emails = EmailStore(store.client, account)
    writer = IndexWriter(emails)
    copies = [NewCopy(u, f"e{u:04}", [], 1_700_000_000 + u, 10, "t1") for u in range(1, 301)]
    await writer.add_copies("m1", copies)
    held_keys = assert_on_one_node(redis_cluster, account)
    name = emails.keys.dated("m1")
    chunks = {k for k in held_keys if k.startswith(name + "#") and k[len(name) + 1 :].isdigit()}
    assert len(chunks) == 4  # 300 members appended in order: 96, 96, 96, 12
    assert {directory(name), chunk_meta(name)} <= held_keys
    page = await emails.dated_window(
        "m1", ascending=False, position=0, anchor=None, anchor_offset=0, limit=50
    )
    assert page is not None
    position, ids, total, _ = page
    assert (position, total) == (0, 300)
    assert ids == [f"e{uid:04}" for uid in range(300, 250, -1)]


async def test_a_change_log_script_in_a_transaction_survives_an_empty_script_cache(
    redis_cluster: RedisClusterSet, store: Store
) -> None:
    """The change log's script is queued in MULTI as EVAL: a node that never saw it (a new
    or restarted primary) runs it all the same, so the transaction commits whole."""
    account = "a" + secrets.token_hex(4)
    state = AccountState(store.client, account)
    keys = state.keys
    for node in redis_cluster.nodes:
        with node.client() as client:
            client.script_flush()
    async with store.client.pipeline(transaction=True) as pipe:
        pipe.hset(keys.mailboxes, "m1", "record")
        await state.record("Mailbox", created=["m1"], pipe=pipe)
        await pipe.execute()
    with redis_cluster.owner(keys.state).client() as node:
        assert node.hget(keys.mailboxes, "m1") == b"record"
        assert node.hget(keys.state, "Mailbox") == b"1"
    changes = await state.changes("Mailbox", f"{await state.epoch()}-0", None)
    assert changes.created == ["m1"]


async def test_the_concurrency_limit_holds_across_replicas_on_a_cluster(
    redis_cluster: RedisClusterSet, store: Store
) -> None:
    other = Store.from_url(redis_cluster.url)  # a second replica's client
    account = "a" + secrets.token_hex(4)
    here = ConcurrencyLimiter(store.client, "api", 2, 30)
    there = ConcurrencyLimiter(other.client, "api", 2, 30)
    key = AccountKeys(account).inflight("api")
    try:
        async with here.admit(account), there.admit(account):
            with redis_cluster.owner(key).client() as node:
                assert node.zcard(key) == 2
            assert assert_on_one_node(redis_cluster, account) == {key}
            with pytest.raises(TooManyConcurrent):
                async with there.admit(account):
                    pass
        async with there.admit(account):
            pass
    finally:
        await other.close()
    with redis_cluster.owner(key).client() as node:
        assert node.zcard(key) == 0


async def test_uploads_are_stored_and_read_back_on_a_cluster(
    redis_cluster: RedisClusterSet, store: Store
) -> None:
    account = "a" + secrets.token_hex(4)
    blobs = BlobStore(store.client, 3600, secret=fixed_secret(b"k" * 32), quota=3 * 1024 * 1024)
    data = secrets.token_bytes(2 * 1024 * 1024 + 17)  # several chunks

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 300_000):
            yield data[start : start + 300_000]

    stored = await blobs.put(account, body(), 10 * 1024 * 1024)
    assert await blobs.size(account, stored.blob_id) == len(data)
    assert b"".join([c async for c in blobs.read(account, stored.blob_id, stored.size)]) == data
    # Only the final key is left (the partial one was renamed), with its expiry, and what
    # charges it to the quota; the scripts that charge and evict run on the account's node.
    keys = AccountKeys(account)
    held = assert_on_one_node(redis_cluster, account)
    assert held == {keys.upload(stored.blob_id), keys.uploads, keys.upload_charges}
    with redis_cluster.owner(keys.meta).client() as node:
        assert 0 < node.ttl(keys.upload(stored.blob_id)) <= 3600
    assert await blobs.charged(account) == len(data) + UPLOAD_OVERHEAD
    # A second upload of this size fits only once the first is deleted to make room.
    data = data[::-1]
    second = await blobs.put(account, body(), 10 * 1024 * 1024)
    assert await blobs.size(account, stored.blob_id) is None
    assert assert_on_one_node(redis_cluster, account) == {
        keys.upload(second.blob_id),
        keys.uploads,
        keys.upload_charges,
    }
    assert await blobs.charged(account) == len(data) + UPLOAD_OVERHEAD


# -- a whole gateway -------------------------------------------------------------------------------


async def by_key(jmap: Jmap) -> dict[str, str]:
    found = await jmap.call("Email/query")
    got = await jmap.call("Email/get", ids=found["ids"], properties=[KEY_PROPERTY])
    return {e[KEY_PROPERTY]: e["id"] for e in got["list"]}


async def states(jmap: Jmap) -> tuple[str, str]:
    email = (await jmap.call("Email/get", ids=[]))["state"]
    mailbox = (await jmap.call("Mailbox/get", ids=[]))["state"]
    return email, mailbox


def draft(drafts: str, blob_id: str) -> dict[str, Any]:
    return {
        "mailboxIds": {drafts: True},
        "keywords": {"$draft": True},
        "from": [{"email": "zoe@example.org"}],
        "subject": "Cluster draft",
        "textBody": [{"partId": "t", "type": "text/plain"}],
        "bodyValues": {"t": {"value": "Written through a cluster.\n"}},
        "attachments": [{"blobId": blob_id, "type": "application/octet-stream", "name": "a.bin"}],
    }


async def test_a_gateway_on_the_cluster_reads_changes_and_shares_its_index(
    dovecot: Dovecot, redis_cluster: RedisClusterSet
) -> None:
    user = dovecot.fresh_user()
    mail = Mail(dovecot, user)
    for key in ("a", "b", "c"):
        mail.append("INBOX", key)
    first = gateway_settings(dovecot.url, redis_cluster.url)
    second = gateway_settings(dovecot.url, redis_cluster.url)
    try:
        async with (
            running_gateway(first) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            jmap = await Jmap(http, user, dovecot.users[user]).start()
            boxes = {path: m["id"] for path, m in (await jmap.mailboxes()).items()}
            ids = await by_key(jmap)
            assert sorted(ids) == ["a", "b", "c"]
            email_state, mailbox_state = await states(jmap)

            attachment = secrets.token_bytes(70_000)
            blob_id = await jmap.upload(attachment)
            download = f"/jmap/download/{jmap.account_id}/{blob_id}/a.bin?accept=application/x"
            fetched = await http.get(download, auth=jmap.auth)
            assert fetched.status_code == 200 and fetched.content == attachment

            result = await jmap.call(
                "Email/set",
                update={
                    ids["a"]: {"keywords/$seen": True},
                    ids["b"]: {"mailboxIds": {boxes["Archive"]: True}},
                },
                destroy=[ids["c"]],
                create={"d": draft(boxes["Drafts"], blob_id)},
            )
            assert result["updated"] == {ids["a"]: None, ids["b"]: None}
            assert result["destroyed"] == [ids["c"]]
            created = result["created"]["d"]["id"]

            # The IMAP server holds what was asked.
            assert mail.folder("INBOX") == {"a": [{"\\Seen"}]}
            assert mail.folder("Archive") == {"b": [set()]}
            ok(mail.imap.select('"Drafts"', readonly=True))
            drafts = ok(mail.imap.uid("SEARCH", "SUBJECT", "Cluster draft"))[0].split()
            assert len(drafts) == 1

            got = await jmap.call(
                "Email/get",
                ids=[ids["a"], ids["b"], ids["c"], created],
                properties=["mailboxIds", "keywords"],
            )
            found = {e["id"]: e for e in got["list"]}
            assert got["notFound"] == [ids["c"]]
            assert found[ids["a"]]["keywords"] == {"$seen": True}
            assert found[ids["b"]]["mailboxIds"] == {boxes["Archive"]: True}
            assert found[created]["mailboxIds"] == {boxes["Drafts"]: True}

            changes = await jmap.call("Email/changes", sinceState=email_state)
            assert sorted(changes["updated"]) == sorted([ids["a"], ids["b"]])
            assert changes["destroyed"] == [ids["c"]]
            assert changes["created"] == [created]
            assert changes["newState"] == result["newState"]
            mailbox_changes = await jmap.call("Mailbox/changes", sinceState=mailbox_state)
            assert {boxes["Inbox"], boxes["Archive"], boxes["Drafts"]} <= set(
                mailbox_changes["updated"]
            )
            assert mailbox_changes["created"] == mailbox_changes["destroyed"] == []
            shown = await states(jmap)

            # A second replica on the same cluster sees the same index and states ...
            async with (
                running_gateway(second) as other_url,
                httpx.AsyncClient(base_url=other_url, timeout=30) as other_http,
            ):
                other = await Jmap(other_http, user, dovecot.users[user]).start()
                assert other.account_id == jmap.account_id
                assert await states(other) == shown
                assert (await other.call("Email/query"))["ids"] == (await jmap.call("Email/query"))[
                    "ids"
                ]
                # ... and a change made through it is a change for the first one.
                await other.call("Email/set", update={ids["a"]: {"keywords/$flagged": True}})
            later = await jmap.call("Email/changes", sinceState=shown[0])
            assert later["updated"] == [ids["a"]]
            assert mail.folder("INBOX") == {"a": [{"\\Seen", "\\Flagged"}]}

        held = assert_on_one_node(redis_cluster, jmap.account_id)
        keys = AccountKeys(jmap.account_id)
        assert {keys.record_bucket(0), keys.mailboxes, keys.state, keys.upload(blob_id)} <= held
    finally:
        mail.close()
