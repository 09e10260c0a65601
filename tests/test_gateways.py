"""tests/gateways.py itself: replicas on one Redis start, answer, end on SIGTERM and on kill -9."""

from __future__ import annotations

import httpx

from tests.gateways import running_gateways
from tests.servers import Dovecot


async def test_two_replicas_serve_and_end(dovecot: Dovecot, redis_url: str) -> None:
    async with running_gateways(2, imap_url=dovecot.url, redis_url=redis_url) as (one, two):
        assert one.pid != two.pid and one.base_url != two.base_url
        await one.wait_ready()
        auth = httpx.BasicAuth("alice", dovecot.users["alice"])
        async with httpx.AsyncClient(timeout=30) as http:
            for process in (one, two):
                assert (await http.get(process.base_url + "/healthz")).status_code == 200
            sessions = [
                (await http.get(p.base_url + "/jmap/session", auth=auth)).json() for p in (one, two)
            ]
        # One deployment: the shared secret in Redis gives both the same account id.
        assert sessions[0]["primaryAccounts"] == sessions[1]["primaryAccounts"]
        assert "gateway_" in await two.metrics()

        one.sigterm()
        assert await one.exits_gracefully()
        two.kill()
        assert not two.running
        assert await two.wait_exit() == -9
