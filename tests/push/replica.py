"""Another gateway replica, for the cross-process push tests: ``python -m tests.push.replica
IMAP_URL REDIS_URL ACCOUNT_ID TYPE ID`` starts the gateway's services on the given Redis (so
its hub hears its journal), commits the creation of ``ID`` of ``TYPE`` in the account through
the journal, stops (which announces what it committed last) and prints the new state."""

from __future__ import annotations

import asyncio
import sys

from gateway import services
from gateway.cache.journal import Journal
from gateway.config import Settings
from gateway.metrics import Metrics


async def commit(imap_url: str, redis_url: str, account_id: str, data_type: str, item: str) -> str:
    svc = await services.start(Settings(imap_url=imap_url, redis_url=redis_url), Metrics())
    try:
        journal = Journal(svc.store.account(account_id))
        async with svc.store.client.pipeline(transaction=True) as pipe:
            await journal.log(pipe, data_type, created=[item])
            (change,) = journal.committed(await pipe.execute())
    finally:
        await services.stop(svc)
    return change.state


if __name__ == "__main__":
    print(asyncio.run(commit(*sys.argv[1:6])))
