"""Refusing push requests a foreign page made with Basic credentials (gateway.origin_check)."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, Settings, load_settings
from gateway.origin_check import (
    allowed_origins,
    ambient_credentials_refused,
    origin_of,
    site_origin,
)

BASIC = "Basic YWxpY2U6c2VjcmV0"  # alice:secret


def settings(**overrides: str) -> Settings:
    return Settings(
        imap_url="imap://mail.example:143",
        redis_url="redis://redis.example",
        public_url="https://jmap.example.com",
        **overrides,
    )


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://jmap.example.com", "https://jmap.example.com"),
        ("HTTPS://JMAP.Example.com:443/", "https://jmap.example.com"),
        ("http://127.0.0.1:8080/jmap", "http://127.0.0.1:8080"),
        ("http://[::1]:80", "http://[::1]"),
        ("null", None),
        ("file:///etc/passwd", None),
        ("https://host:99999", None),
    ],
)
def test_origin_serialisation(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


def test_the_sites_own_origin_comes_from_the_public_url() -> None:
    assert site_origin(settings()) == "https://jmap.example.com"


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({"authorization": BASIC}, False),  # no Origin: not a browser
        ({"origin": "https://evil.example", "authorization": BASIC}, True),
        ({"origin": "https://jmap.example.com", "authorization": BASIC}, False),
        ({"origin": "https://jmap.example.com:443", "authorization": BASIC}, False),
        ({"origin": "http://jmap.example.com", "authorization": BASIC}, True),  # other scheme
        ({"origin": "https://app.example", "authorization": BASIC}, False),  # listed
        ({"origin": "null", "authorization": BASIC}, True),
        ({"origin": "https://evil.example", "authorization": "basic x"}, True),
        ({"origin": "https://evil.example", "authorization": "Bearer abc"}, False),
        ({"origin": "https://evil.example"}, False),  # no credentials: a push token or a 401
    ],
)
def test_basic_from_a_foreign_origin_is_refused(headers: dict[str, str], refused: bool) -> None:
    config = settings(push_allowed_origins="https://app.example, https://other.example:8443")
    assert ambient_credentials_refused(headers, config, site_origin(config)) is refused


def test_allowed_origins_are_normalised() -> None:
    config = settings(push_allowed_origins=" https://App.Example:443 ,http://b.example:8080/")
    assert allowed_origins(config) == {"https://app.example", "http://b.example:8080"}


@pytest.mark.parametrize("value", ["https://a.example/path", "*", "ftp://a.example", "a.example"])
def test_a_listed_value_that_is_not_an_origin_stops_start_up(value: str) -> None:
    with pytest.raises(ConfigError, match="GATEWAY_PUSH_ALLOWED_ORIGINS"):
        load_settings(
            imap_url="imap://mail.example:143",
            redis_url="redis://redis.example",
            push_allowed_origins=value,
        )
