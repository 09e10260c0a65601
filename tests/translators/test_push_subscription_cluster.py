"""PushSubscription/set and /get through a gateway on a real three-node Redis Cluster: every
account step is a script within the account's slot, the server-wide queue keys are written
apart, and what the nodes hold is read from each node itself."""

from __future__ import annotations

import msgpack

from tests.rediscluster import RedisClusterSet
from tests.servers import Dovecot
from tests.translators.push_subscriptions import User, push_gateway, push_settings


async def test_the_verification_flow_on_a_cluster(
    dovecot: Dovecot, redis_cluster: RedisClusterSet
) -> None:
    async with push_gateway(push_settings(dovecot, redis_cluster.url)) as http:
        user = await User(http, dovecot).start()
        sub_id = (await user.create())["id"]
        base = f"jg:{{{user.account_id}}}"
        owner = redis_cluster.owner(f"{base}:push-subscriptions")
        with owner.client() as node:
            record = msgpack.unpackb(node.hget(f"{base}:push-subscriptions", sub_id))
            assert msgpack.unpackb(node.hget(f"{base}:push-pending", sub_id))["verify"] is True
            assert node.get(f"{base}:push-login") == user.name.encode()
        due = redis_cluster.owner("jg:push-due")
        with due.client() as node:
            assert node.zscore("jg:push-due", f"{user.account_id} {sub_id}") is not None
        updated = await user.call(
            "PushSubscription/set",
            update={sub_id: {"verificationCode": record["verificationCode"]}},
        )
        assert updated["updated"] == {sub_id: None}
        subscribed = redis_cluster.owner("jg:push-subscribed")
        with subscribed.client() as node:
            assert node.zscore("jg:push-subscribed", user.account_id) == record["expires"]
        (shown,) = (await user.call("PushSubscription/get"))["list"]
        assert shown["verificationCode"] == record["verificationCode"]
        destroyed = await user.call("PushSubscription/set", destroy=[sub_id])
        assert destroyed["destroyed"] == [sub_id]
        with owner.client() as node:
            assert node.hget(f"{base}:push-subscriptions", sub_id) is None
        with subscribed.client() as node:
            assert node.zscore("jg:push-subscribed", user.account_id) is None
