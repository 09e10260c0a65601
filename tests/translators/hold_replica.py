"""A replica that only sends held submissions, run as its own process by the tests that kill it
(``python -m tests.translators.hold_replica REDIS_URL SMTP_PORT LEASE_SECONDS``).

It runs the gateway's own DelayedSender on the schedule every gateway shares, with a lease
short enough for a test to see it run out once the process is gone; it logs in to the SMTP
sink without AUTH, as a gateway with GATEWAY_SMTP_AUTH=none does.
"""

from __future__ import annotations

import asyncio
import sys

import gateway.services  # noqa: F401  (loads the translator packages in the gateway's order)
from gateway.cache.account import AccountIndex
from gateway.cache.schedule import Schedule
from gateway.cache.store import Store
from gateway.smtp.connection import Authorization
from gateway.smtp.sender import SmtpEndpoint, SmtpSender
from gateway.translators.submission.delayed import DelayedSender


async def main(redis_url: str, smtp_port: int, lease: float) -> None:
    store = Store.from_url(redis_url)
    sender = DelayedSender(
        Schedule(store.client, lease_seconds=lease),
        SmtpSender(SmtpEndpoint("127.0.0.1", smtp_port)),
        lambda username: Authorization.none(),
        lambda account_id: AccountIndex.of(store.client, account_id),
        poll_seconds=0.05,
    )
    sender.start()
    print("ready", flush=True)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
