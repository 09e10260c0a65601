"""jmap_gateway_smtp_* metrics: what the SMTP client reports, counted per outcome."""

from __future__ import annotations

import secrets

import pytest

from gateway.credentials import Credentials
from gateway.metrics import Metrics
from gateway.smtp.connection import Authorization, SmtpEndpoint
from gateway.smtp.envelope import Envelope, Recipient
from gateway.smtp.outcome import SmtpFailure
from gateway.smtp.sender import SmtpSender
from tests.servers import LOOPBACK, refused_port
from tests.smtp_servers import Sink

AUTH = Authorization.user(Credentials("alice", "alice-pw"))
MESSAGE = b"Subject: metrics\r\n\r\nHello.\r\n"


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_sends_and_failures_are_counted(smtp_sink: Sink) -> None:
    t = secrets.token_hex(4)
    metrics = Metrics()
    smtp = SmtpSender(SmtpEndpoint(LOOPBACK, smtp_sink.port), metrics)
    try:
        await smtp.send(AUTH, Envelope("a@x.org", {}, (Recipient(f"m-{t}@x.org"),)), MESSAGE)
        await smtp.send(
            AUTH,
            Envelope("a@x.org", {}, (Recipient(f"m2-{t}@x.org"), Recipient(f"reject-{t}@x.org"))),
            MESSAGE,
        )
        with pytest.raises(SmtpFailure):
            await smtp.send(
                AUTH, Envelope("a@x.org", {}, (Recipient(f"cut-after-dot-{t}@x.org"),)), MESSAGE
            )
    finally:
        await smtp.close()
    with refused_port() as port:
        down = SmtpSender(SmtpEndpoint(LOOPBACK, port), metrics)
        with pytest.raises(SmtpFailure):
            await down.probe()
    assert value(metrics, "jmap_gateway_smtp_transactions_total", outcome="sent") == 1
    assert value(metrics, "jmap_gateway_smtp_transactions_total", outcome="partial") == 1
    assert value(metrics, "jmap_gateway_smtp_transactions_total", outcome="ambiguous") == 1
    assert value(metrics, "jmap_gateway_smtp_transaction_seconds_count") == 3
    # One session for all three sends: reused (after RSET) by the second and the third.
    assert value(metrics, "jmap_gateway_smtp_connects_total", outcome="ok") == 1
    assert value(metrics, "jmap_gateway_smtp_connects_total", outcome="unreachable") == 1
    assert value(metrics, "jmap_gateway_smtp_commands_total", command="RCPT", outcome="2xx") == 3
    assert value(metrics, "jmap_gateway_smtp_commands_total", command="RCPT", outcome="5xx") == 1
    assert (
        value(metrics, "jmap_gateway_smtp_commands_total", command=".", outcome="connection_lost")
        == 1
    )
    assert value(metrics, "jmap_gateway_smtp_commands_total", command="RSET", outcome="2xx") == 2
