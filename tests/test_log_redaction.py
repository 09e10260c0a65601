"""Push tokens travel in URLs (?access_token=): no log line ever holds one (gateway.logs)."""

from __future__ import annotations

import logging

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.logs import JsonFormatter, RedactTokens, redact

TOKEN = "p1.AAAAsecretPAYLOADzzzz.MACmacMACmac"


def test_redact_every_spelling() -> None:
    for url in (
        f"/jmap/ws?access_token={TOKEN}",
        f"/jmap/eventsource/?types=*&access_token={TOKEN}&ping=0",
        f"/jmap/eventsource/?ACCESS_TOKEN={TOKEN}",
        f"/jmap/eventsource/?access%5Ftoken={TOKEN}#frag",
        f'GET "/x?access_token={TOKEN}" 200',
    ):
        redacted = redact(url)
        assert TOKEN not in redacted and "[redacted]" in redacted, url
    assert redact("/jmap/eventsource/?types=*&ping=0") == "/jmap/eventsource/?types=*&ping=0"
    assert redact("/x?my_token=1&access_tokens=2") == "/x?my_token=1&access_tokens=2"


def test_formatted_lines_redacted() -> None:
    record = logging.LogRecord(
        "any", logging.INFO, __file__, 1, "url %s", (f"/?access_token={TOKEN}",), None
    )
    line = JsonFormatter().format(record)
    assert TOKEN not in line and "access_token=[redacted]" in line


def test_a_bad_format_drops_its_arguments() -> None:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "%d %s", ("x",), None)
    RedactTokens().filter(record)
    assert record.getMessage() == "%d %s"


async def test_handshake_and_stream_urls_never_logged(
    gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn logs every WebSocket handshake's path and query: the token is not in it."""
    caplog.set_level(logging.INFO)
    ws_url = gateway.replace("http://", "ws://") + f"/jmap/ws?access_token={TOKEN}"
    with pytest.raises(InvalidStatus):
        async with connect(ws_url, subprotocols=["jmap"]):  # type: ignore[list-item]
            pass
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        response = await http.get(f"/jmap/eventsource/?types=*&access_token={TOKEN}")
        assert response.status_code in (401, 404)

    # The test's own HTTP client logs its URLs too (logger "httpx"): the gateway's lines only.
    records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    messages = [record.getMessage() for record in records]
    assert any("access_token=[redacted]" in message for message in messages), messages
    assert not any(TOKEN in message for message in messages)
    assert not any(TOKEN in JsonFormatter().format(record) for record in records)
