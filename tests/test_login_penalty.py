"""Dovecot's auth penalty back on: one client address guessing passwords is slowed down by
Dovecot, and nobody else is, because the gateway names each client's address with ID."""

from __future__ import annotations

import asyncio
import re
import subprocess

import httpx

from tests.conftest import gateway_settings, running_gateway
from tests.servers import FRESH_PASSWORD, Dovecot

ATTACKER = "203.0.113.50"
VICTIM = "198.51.100.50"
# Dovecot's documented penalty: the failure replies are delayed 2, then 4, then 8 seconds (at
# most 15) for the address. After two failures the address's next login waits 8 seconds, past
# this login timeout, while a login that is not penalised takes milliseconds.
LOGIN_TIMEOUT = 6.0


def penalties(dovecot: Dovecot) -> dict[str, int]:
    """``doveadm penalty``: Dovecot's own count of failures per address."""
    listing = subprocess.run(
        ["doveadm", "-c", str(dovecot.config), "penalty"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = (line.split() for line in listing.splitlines()[1:])
    return {row[0]: int(row[1]) for row in rows if row}


async def get_session(
    http: httpx.AsyncClient, user: str, password: str, address: str
) -> httpx.Response:
    return await http.get(
        "/jmap/session", auth=httpx.BasicAuth(user, password), headers={"x-forwarded-for": address}
    )


async def test_guessing_from_one_address_does_not_delay_another(
    trusting_dovecot: Dovecot, redis_url: str
) -> None:
    victim = trusting_dovecot.fresh_user()
    settings = gateway_settings(
        trusting_dovecot.url,
        redis_url,
        trusted_proxies="127.0.0.1",
        # The gateway's own counts are the subject of other tests: here Dovecot sees it all.
        login_failures_per_address=0,
        login_failures_per_username=0,
        auth_cache_seconds=0,
        imap_connect_timeout=LOGIN_TIMEOUT,
    )
    async with (
        running_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        for guess in range(2):
            response = await get_session(http, "alice", f"guess-{guess}", ATTACKER)
            assert response.status_code == 401
        # The attacker's next login, even with a right password, waits out its penalty ...
        penalised = asyncio.create_task(
            get_session(http, "bob", trusting_dovecot.users["bob"], ATTACKER)
        )
        await asyncio.sleep(0.2)
        # ... while another address logs in at once.
        response = await get_session(http, victim, FRESH_PASSWORD, VICTIM)
        assert response.status_code == 200
        assert not penalised.done()
        assert (await penalised).status_code == 503  # past the login timeout
    counted = penalties(trusting_dovecot)
    assert counted[ATTACKER] >= 2
    assert VICTIM not in counted and "127.0.0.1" not in counted
    log = (trusting_dovecot.root / "log" / "dovecot.log").read_text()
    assert re.search(rf"user=<{victim}>, method=PLAIN, rip={re.escape(VICTIM)},", log)
    assert re.search(rf"auth failed.*user=<alice>.*rip={re.escape(ATTACKER)},", log)
