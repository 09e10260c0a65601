"""submissionExtensions (RFC 8621 1.3.2) from the SMTP server's EHLO, asked at start-up, kept
in Redis, and asked again in the background while the server is down."""

from __future__ import annotations

import asyncio
import shutil
import smtplib
from typing import Any

import httpx

from gateway.jmap.capabilities import SUBMISSION
from gateway.smtp.extensions import TRANSPORT_ONLY
from tests.conftest import SERVICE_USER, running_gateway, sending_settings
from tests.servers import LOOPBACK, Dovecot, make_data_dir, refused_port
from tests.smtp_servers import Postfix, Sink


def ehlo_by_smtplib(port: int) -> dict[str, list[str]]:
    """What the server says to EHLO, read by the standard library, in 1.3.2's form."""
    with smtplib.SMTP(LOOPBACK, port, timeout=10) as conn:
        conn.ehlo("witness.test")
        features = dict(conn.esmtp_features)
    return {
        keyword.upper(): value.split()
        for keyword, value in features.items()
        if keyword.upper() not in TRANSPORT_ONLY
    }


async def session(base: str, dovecot: Dovecot) -> dict[str, Any]:
    auth = httpx.BasicAuth("alice", dovecot.users["alice"])
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.get("/jmap/session", auth=auth)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def submission(body: dict[str, Any]) -> dict[str, Any]:
    [account] = body["accounts"].values()
    capability: dict[str, Any] = account["accountCapabilities"][SUBMISSION]
    return capability


async def test_the_session_shows_what_postfix_says(
    postfix: Postfix, sending_dovecot: Dovecot, sending_gateway: str
) -> None:
    body = await session(sending_gateway, sending_dovecot)
    assert SUBMISSION in body["capabilities"]
    assert submission(body) == {
        "maxDelayedSend": 0,  # users' own credentials only: nothing can be sent later
        "submissionExtensions": ehlo_by_smtplib(postfix.submission_port),
    }
    assert "DSN" in submission(body)["submissionExtensions"]


async def test_delayed_sending_with_a_service_account(
    postfix: Postfix, sending_dovecot: Dovecot, redis_url: str
) -> None:
    settings = sending_settings(
        sending_dovecot,
        postfix.url,
        redis_url,
        smtp_service_username=SERVICE_USER[0],
        smtp_service_password=SERVICE_USER[1],
        max_delayed_send_seconds=3600,
    )
    async with running_gateway(settings) as base:
        assert submission(await session(base, sending_dovecot))["maxDelayedSend"] == 3600


async def test_a_server_down_at_start_shows_the_last_answer_from_redis(
    postfix: Postfix, sending_dovecot: Dovecot, redis_url: str
) -> None:
    up = sending_settings(sending_dovecot, postfix.url, redis_url)
    async with running_gateway(up) as base:
        first = await session(base, sending_dovecot)
    with refused_port() as port:
        down = sending_settings(sending_dovecot, f"smtp://{LOOPBACK}:{port}", redis_url)
        async with running_gateway(down) as base:
            second = await session(base, sending_dovecot)
    assert submission(second) == submission(first)
    assert submission(second)["submissionExtensions"]


async def test_neither_server_nor_redis_then_the_server_comes(
    sending_dovecot: Dovecot, redis_url: str
) -> None:
    sink = Sink(make_data_dir("jg-sink-late-"))
    settings = sending_settings(sending_dovecot, sink.url, redis_url)
    async with running_gateway(settings) as base:
        before = await session(base, sending_dovecot)
        assert submission(before)["submissionExtensions"] == {}
        sink.start()
        try:
            after = before
            for _ in range(200):
                await asyncio.sleep(0.1)
                after = await session(base, sending_dovecot)
                if submission(after)["submissionExtensions"]:
                    break
            expected = ehlo_by_smtplib(sink.port)
        finally:
            sink.stop()
            shutil.rmtree(sink.root, ignore_errors=True)
    assert submission(after)["submissionExtensions"] == expected
    assert after["state"] != before["state"]
