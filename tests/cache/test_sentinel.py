"""Redis Sentinel: the URL form, discovery of the master, and a gateway that keeps working
(with its index intact) across a failover, against a real master, replica and Sentinel."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest
import redis

from gateway.cache.connect import parse_sentinel_url
from gateway.cache.store import Store
from gateway.config import ConfigError, load_settings
from tests.conftest import gateway_settings, running_gateway
from tests.sentinel import SentinelSet
from tests.servers import Dovecot

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"


def test_sentinel_urls_name_hosts_master_db_and_credentials() -> None:
    url = parse_sentinel_url("rediss+sentinel://app:p%40ss@s1:26380,[::1],s3/main-redis/2")
    assert url.sentinels == (("s1", 26380), ("::1", 26379), ("s3", 26379))
    assert (url.master, url.db, url.username, url.password, url.tls) == (
        "main-redis",
        2,
        "app",
        "p@ss",
        True,
    )
    plain = parse_sentinel_url("redis+sentinel://:pw@s1/m")
    assert (plain.username, plain.password, plain.db, plain.tls) == (None, "pw", 0, False)
    assert "p@ss" not in repr(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://:hunter2@s1:26379",  # no master name
        "redis+sentinel://:hunter2@s1:26379/m/zero",
        "redis+sentinel://:hunter2@s1:port/m",
        "redis+sentinel://:hunter2@s1,/m",
        "redis+sentinel://:hunter2@s1:99999/m",
        "redis+sentinel://:hunter2@s1/m?ssl_cert_reqs=none",
        # urlsplit's own error would quote the host part: U+FF03 normalises to "#".
        "redis+sentinel://:hunter2\uff03@s1:26379/m",
        "redis://:hunter2\uff03@r1:6379/0",
    ],
)
def test_bad_sentinel_urls_are_refused_without_the_password(url: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_sentinel_url(url)
    assert "hunter2" not in str(refused.value)
    with pytest.raises(ConfigError) as config:
        load_settings(imap_url="imap://127.0.0.1:143", redis_url=url)
    assert "GATEWAY_REDIS_URL" in str(config.value)
    assert "hunter2" not in str(config.value)


async def test_the_store_writes_to_the_master_sentinel_names(sentinels: SentinelSet) -> None:
    store = Store.from_url(sentinels.url)
    try:
        assert await store.ping()
        secret = await store.server_secret()
    finally:
        await store.close()
    with redis.Redis(port=sentinels.master.port) as master:
        assert master.get("jg:secret") == secret


async def test_the_gateway_follows_a_failover_with_its_index(
    dovecot: Dovecot, sentinels: SentinelSet
) -> None:
    settings = gateway_settings(dovecot.url, sentinels.url, ready_cache_seconds=0)
    auth = httpx.BasicAuth("alice", dovecot.users["alice"])
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        account = (await http.get("/jmap/session", auth=auth)).json()["primaryAccounts"][MAIL]
        body = json.dumps(
            {"using": [CORE, MAIL], "methodCalls": [["Mailbox/get", {"accountId": account}, "m"]]}
        )

        async def mailboxes() -> httpx.Response:
            return await http.post(
                "/jmap/api/", content=body, auth=auth, headers={"content-type": "application/json"}
            )

        before = (await mailboxes()).json()["methodResponses"][0][1]
        assert (await http.get("/readyz")).status_code == 200

        assert sentinels.failover() == sentinels.replica.port

        # A connection to the demoted master fails once (the client then asks the Sentinel
        # again); the retry reaches the new master.
        answers = [await mailboxes() for _ in range(3)]
        after = answers[-1].json()["methodResponses"][0]
        assert after[0] == "Mailbox/get"
        # Same state and ids: the index moved with the data, nothing was rebuilt.
        assert after[1]["state"] == before["state"]
        assert sorted(after[1]["list"], key=str) == sorted(before["list"], key=str)
        assert (await http.get("/readyz")).status_code == 200

        # A change lands in the new master's index.
        name = "After failover " + secrets.token_hex(4)
        create = {"accountId": account, "create": {"new": {"name": name}}}
        body = json.dumps({"using": [CORE, MAIL], "methodCalls": [["Mailbox/set", create, "s"]]})
        created = (await mailboxes()).json()["methodResponses"][0][1]["created"]["new"]["id"]
    with redis.Redis(port=sentinels.replica.port) as new_master:
        assert new_master.hexists(f"jg:{{{account}}}:mailboxes", created)
    with dovecot.client("alice") as imap:
        imap.delete(f'"{name}"')


def test_a_sentinel_password_without_sentinels_is_refused() -> None:
    with pytest.raises(ConfigError, match="GATEWAY_REDIS_SENTINEL_PASSWORD applies only"):
        load_settings(
            imap_url="imap://127.0.0.1:143",
            redis_url="redis+cluster://127.0.0.1:7000",
            redis_sentinel_password="pw",
        )
