"""Helpers of the push tests: a replica in this process, a commit in another, a commit here."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from gateway import services
from gateway.cache.journal import Journal
from gateway.config import Settings
from gateway.metrics import Metrics

# No IMAP server is reached: the hub needs Redis alone.
NO_IMAP = "imap://127.0.0.1:9"
ROOT = Path(__file__).parent.parent.parent


@asynccontextmanager
async def replica(redis_url: str, **settings: int) -> AsyncIterator[services.Services]:
    """The gateway's services on ``redis_url``, hub started, as one replica runs them."""
    svc = await services.start(
        Settings(imap_url=NO_IMAP, redis_url=redis_url, **settings), Metrics()
    )
    try:
        yield svc
    finally:
        await services.stop(svc)


async def commit_elsewhere(redis_url: str, account_id: str, data_type: str, item: str) -> str:
    """Commit a creation in another process (another replica); its new state."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.push.replica",
        NO_IMAP,
        redis_url,
        account_id,
        data_type,
        item,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    return out.decode().strip().splitlines()[-1]


async def commit_here(svc: services.Services, account_id: str, data_type: str, item: str) -> str:
    """Commit a creation through this process's journal, as every writer does; its new state."""
    journal = Journal(svc.store.account(account_id))
    async with svc.store.client.pipeline(transaction=True) as pipe:
        await journal.log(pipe, data_type, created=[item])
        (change,) = journal.committed(await pipe.execute())
    return change.state
