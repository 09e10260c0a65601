"""From settings to the SMTP sender: TLS, the clear-text warning, and how sends authenticate."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gateway.config import Settings
from gateway.credentials import Credentials
from gateway.upstream import (
    background_authorization,
    request_authorization,
    smtp_endpoint,
    smtp_sender,
)

PASSWORD = "service-secret-pw-42"


def settings(**values: Any) -> Settings:
    return Settings(imap_url="imap://127.0.0.1", redis_url="redis://127.0.0.1", **values)


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("smtp://mail.example.com", True),
        ("smtp://192.0.2.7:2525", True),
        ("smtp://127.0.0.1:2525", False),
        ("smtp://localhost", False),
        ("smtp://[::1]:25", False),
        ("smtp://mail.example.com?starttls", False),
        ("smtps://mail.example.com", False),
    ],
)
def test_a_warning_when_passwords_would_cross_the_network_in_clear(
    url: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "gateway.upstream")
    assert smtp_sender(settings(smtp_url=url)) is not None
    assert ("in clear" in caplog.text) is warned


def test_no_warning_when_no_credentials_are_sent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "gateway.upstream")
    smtp_sender(settings(smtp_url="smtp://relay.example.com:25", smtp_auth="none"))
    assert "in clear" not in caplog.text


def test_endpoints() -> None:
    assert smtp_endpoint(settings()) is None
    plain = smtp_endpoint(settings(smtp_url="smtp://mail.example.com"))
    assert plain is not None and (plain.port, plain.tls, plain.ssl_context) == (587, "plain", None)
    implicit = smtp_endpoint(settings(smtp_url="smtps://mail.example.com"))
    assert implicit is not None and (implicit.port, implicit.tls) == (465, "implicit")
    # Certificates are verified unless the operator says otherwise (tests only).
    assert implicit.ssl_context is not None and implicit.ssl_context.check_hostname
    starttls = smtp_endpoint(settings(smtp_url="smtp://mail.example.com:2587?starttls"))
    assert starttls is not None and starttls.tls == "starttls"


def test_how_sends_authenticate() -> None:
    alice = Credentials("alice", "alice-pw")
    user = settings(smtp_url="smtp://127.0.0.1")
    assert request_authorization(user, alice).credentials == alice
    assert background_authorization(user, "alice") is None  # no password kept: no later send
    relay = settings(smtp_url="smtp://127.0.0.1", smtp_auth="none")
    assert request_authorization(relay, alice).credentials is None
    none = background_authorization(relay, "alice")
    assert none is not None and none.credentials is None
    service = settings(
        smtp_url="smtp://127.0.0.1",
        smtp_service_username="jmap-submit",
        smtp_service_password=PASSWORD,
    )
    acting = background_authorization(service, "alice")
    assert acting is not None and acting.authorize_as == "alice"
    assert acting.credentials is not None and acting.credentials.username == "jmap-submit"
    assert PASSWORD not in repr(acting) and PASSWORD not in repr(service)


def test_a_service_account_needs_both_settings() -> None:
    with pytest.raises(ValueError, match="go together"):
        settings(smtp_service_username="jmap-submit")
    with pytest.raises(ValueError, match="user or none"):
        settings(smtp_auth="sometimes")
