"""The gateway's upstream URL forms and certificate settings, end to end."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import gateway_settings, running_gateway
from tests.servers import LOOPBACK, Dovecot


def urls(dovecot: Dovecot) -> dict[str, str]:
    return {
        "starttls": f"imap://{LOOPBACK}:{dovecot.imap_port}?starttls",
        "implicit": f"imaps://{LOOPBACK}:{dovecot.imaps_port}",
    }


async def session_status(url: str, redis_url: str, dovecot: Dovecot, **options: Any) -> int:
    settings = gateway_settings(url, redis_url, imap_connect_timeout=3, **options)
    auth = httpx.BasicAuth("alice", dovecot.users["alice"])
    async with running_gateway(settings) as base, httpx.AsyncClient(base_url=base) as http:
        return (await http.get("/jmap/session", auth=auth)).status_code


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_verified_with_the_configured_ca(dovecot: Dovecot, redis_url: str, mode: str) -> None:
    url = urls(dovecot)[mode]
    assert await session_status(url, redis_url, dovecot, tls_ca_file=dovecot.cert) == 200


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_unknown_certificate_is_refused(dovecot: Dovecot, redis_url: str, mode: str) -> None:
    assert await session_status(urls(dovecot)[mode], redis_url, dovecot) == 503


async def test_insecure_switch_skips_verification(dovecot: Dovecot, redis_url: str) -> None:
    url = urls(dovecot)["implicit"]
    assert await session_status(url, redis_url, dovecot, tls_insecure=True) == 200
