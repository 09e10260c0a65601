"""The push hub on a Redis the Sentinels name: announcements cross replicas before and after
a failover (SENTINEL FAILOVER), with a resync when the pub/sub connection moved."""

from __future__ import annotations

import asyncio

from tests.push.harness import commit_elsewhere, commit_here, replica
from tests.push.test_hub import WAIT, account, until_changed
from tests.sentinel import SentinelSet


async def test_announcements_survive_a_failover(sentinels: SentinelSet) -> None:
    acc = account()
    async with replica(sentinels.url) as svc, svc.push.listen(acc, None, None) as sub:
        state = await commit_elsewhere(sentinels.url, acc, "Email", "e1")
        assert await sub.next(WAIT) == {acc: {"Email": state}}
        resyncs = svc.metrics.push_resyncs._value.get()
        await asyncio.to_thread(sentinels.failover)
        # The Sentinel drops the clients of the servers it reconfigures: a reconnect
        # (to the new master) and a resync follow.
        async with asyncio.timeout(60):
            while svc.metrics.push_resyncs._value.get() == resyncs:
                await asyncio.sleep(0.1)
        later = await commit_here(svc, acc, "Mailbox", "m1")
        await until_changed(sub, "Mailbox", later)
