"""Settings: required values, URL forms, and one-line errors naming the variable."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.__main__ import build_parser, config_table
from gateway.config import ConfigError, TlsMode, load_settings, parse_upstream_url

REQUIRED = {"GATEWAY_IMAP_URL": "imap://127.0.0.1:1143", "GATEWAY_REDIS_URL": "redis://127.0.0.1"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in REQUIRED:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("imap://mail.example.com", "mail.example.com", 143, TlsMode.PLAIN),
        ("imap://mail.example.com:1143?starttls", "mail.example.com", 1143, TlsMode.STARTTLS),
        ("imaps://mail.example.com", "mail.example.com", 993, TlsMode.IMPLICIT),
        ("imaps://[::1]:10993", "::1", 10993, TlsMode.IMPLICIT),
    ],
)
def test_imap_url_forms(url: str, host: str, port: int, tls: TlsMode) -> None:
    parsed = parse_upstream_url(url, "imap")
    assert (parsed.host, parsed.port, parsed.tls) == (host, port, tls)


@pytest.mark.parametrize(
    ("url", "port", "tls"),
    [
        ("smtp://relay", 587, TlsMode.PLAIN),
        ("smtp://relay:2525?starttls", 2525, TlsMode.STARTTLS),
        ("smtps://relay", 465, TlsMode.IMPLICIT),
    ],
)
def test_smtp_url_forms(url: str, port: int, tls: TlsMode) -> None:
    parsed = parse_upstream_url(url, "smtp")
    assert (parsed.port, parsed.tls) == (port, tls)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://mail.example.com", "must start with imap://, imaps://"),
        ("imaps://mail.example.com?starttls", "already TLS"),
        ("imap://user:pw@mail.example.com", "must not carry credentials"),
        ("imap://mail.example.com:99999", "invalid port"),
        ("imap://mail.example.com/INBOX", "no path"),
        ("imap://mail.example.com?tls", "unknown option"),
        ("imap://", "has no host"),
    ],
)
def test_bad_imap_urls(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_upstream_url(url, "imap")


def test_only_upstream_and_redis_are_required(env: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        env.setenv(name, value)
    settings = load_settings()
    assert settings.smtp is None
    assert settings.base_url == "http://127.0.0.1:8080"
    assert settings.max_calls_in_request == 32


def test_missing_setting_names_the_variable(env: pytest.MonkeyPatch) -> None:
    env.setenv("GATEWAY_REDIS_URL", "redis://127.0.0.1")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == "GATEWAY_IMAP_URL: is required but not set"


def test_bad_setting_names_the_variable(env: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        env.setenv(name, value)
    env.setenv("GATEWAY_PORT", "http")
    with pytest.raises(ConfigError, match=r"^GATEWAY_PORT: "):
        load_settings()


def test_flags_win_over_environment(env: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        env.setenv(name, value)
    env.setenv("GATEWAY_PORT", "9000")
    assert load_settings(port="9001").port == 9001


def test_cli_stops_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--imap-url", "imap://h", "--redis-url", "ftp://x"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "jmap-gateway: GATEWAY_REDIS_URL: must start with redis://, rediss://, unix://, "
        "redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://"
    ]


def test_help_lists_every_setting() -> None:
    """argparse %-formats help texts; a setting's % (GATEWAY_USERNAME_FORMAT) broke --help."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for help_text in (parser.format_help(), commands.choices["serve"].format_help()):
        assert "--username-format" in help_text and "%Ln" in help_text


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert config_table() in readme


def test_wildcard_host_needs_a_public_url(env: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        env.setenv(name, value)
    env.setenv("GATEWAY_HOST", "0.0.0.0")
    with pytest.raises(ConfigError, match="GATEWAY_PUBLIC_URL is required"):
        load_settings()
    assert load_settings(public_url="https://mail.example.com/").base_url == (
        "https://mail.example.com"
    )


def test_upload_quota_holds_the_largest_upload(env: pytest.MonkeyPatch) -> None:
    """RFC 8620 6: the quota SHOULD hold the most one object can reference; an upload of the
    largest size, with its keys, must fit. Unset, it grows with the two limits."""
    for name, value in REQUIRED.items():
        env.setenv(name, value)
    assert load_settings().upload_quota_octets == 100_000_512
    assert load_settings(max_size_upload=70_000_000).upload_quota_octets == 140_000_512
    assert load_settings(upload_quota=50_000_512).upload_quota_octets == 50_000_512
    with pytest.raises(ConfigError, match="GATEWAY_UPLOAD_QUOTA must be at least"):
        load_settings(upload_quota=50_000_000)
    with pytest.raises(ConfigError, match="GATEWAY_UPLOAD_QUOTA must be at least"):
        load_settings(upload_quota=60_000_000, max_size_attachments_per_email=70_000_000)
