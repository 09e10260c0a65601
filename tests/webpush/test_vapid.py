"""VAPID (RFC 8292): the token's signature verified with the public key, its claims, the
header form, the per-origin cache, key loading in both forms and the settings pair."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.config import ConfigError, load_settings
from gateway.webpush.vapid import (
    MAX_CACHED_ORIGINS,
    RENEW_BEFORE_SECONDS,
    TOKEN_SECONDS,
    Vapid,
    load_private_key,
    origin,
)
from tests.webpush.checks import b64, verify_vapid

NOW = 1_800_000_000.0
ROOT = Path(__file__).parent.parent.parent


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def test_token_is_signed_with_the_advertised_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    vapid = Vapid(key, "mailto:ops@example.com", clock=Clock())
    head, claims, k = verify_vapid(
        vapid.authorization("https://fcm.googleapis.com/fcm/send/abc?x=1")
    )
    assert head == {"typ": "JWT", "alg": "ES256"}
    assert claims == {
        "aud": "https://fcm.googleapis.com",
        "exp": int(NOW) + TOKEN_SECONDS,
        "sub": "mailto:ops@example.com",
    }
    # RFC 8292 2: exp no more than 24 hours away.
    assert int(NOW) < claims["exp"] <= NOW + 24 * 3600  # type: ignore[operator]
    expected = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert b64(k) == expected
    assert k == vapid.public_key_b64url and "=" not in k


def test_tampered_token_fails_verification() -> None:
    vapid = Vapid(ec.generate_private_key(ec.SECP256R1()), "mailto:a@example.com")
    header = vapid.authorization("https://push.example.net/x")
    token, k = header.removeprefix("vapid t=").split(", k=")
    head, _claims, signature = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"aud":"https://evil.example","exp":1,"sub":"x"}')
    with pytest.raises(InvalidSignature):
        verify_vapid(f"vapid t={head}.{forged.decode().rstrip('=')}.{signature}, k={k}")


def test_tokens_are_cached_per_origin_until_near_expiry() -> None:
    clock = Clock()
    vapid = Vapid(ec.generate_private_key(ec.SECP256R1()), "https://example.com/c", clock=clock)
    first = vapid.authorization("https://push.example.net/a")
    assert vapid.authorization("https://push.example.net:443/b") == first
    other = vapid.authorization("https://push.example.net:8443/a")
    assert other != first and verify_vapid(other)[1]["aud"] == "https://push.example.net:8443"
    clock.now += TOKEN_SECONDS - RENEW_BEFORE_SECONDS - 1
    assert vapid.authorization("https://push.example.net/a") == first
    clock.now += 2
    renewed = vapid.authorization("https://push.example.net/a")
    assert renewed != first
    assert verify_vapid(renewed)[1]["exp"] == int(clock.now) + TOKEN_SECONDS


def test_cache_is_bounded() -> None:
    vapid = Vapid(ec.generate_private_key(ec.SECP256R1()), "mailto:a@example.com")
    for n in range(MAX_CACHED_ORIGINS + 10):
        vapid.authorization(f"https://push{n}.example.net/")
    assert len(vapid._tokens) == MAX_CACHED_ORIGINS


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Push.Example.NET/x/y?z", "https://push.example.net"),
        ("https://push.example.net:443/", "https://push.example.net"),
        ("http://push.example.net:80/", "http://push.example.net"),
        ("http://push.example.net:8080/", "http://push.example.net:8080"),
        ("https://[2001:db8::1]:8443/", "https://[2001:db8::1]:8443"),
        ("https://bücher.example/", "https://xn--bcher-kva.example"),
        # IDNA 2008, as the HTTP client connects (IDNA 2003 would say fass.de).
        ("https://faß.de/", "https://xn--fa-hia.de"),
        ("https://FAß.de:8443/", "https://xn--fa-hia.de:8443"),
    ],
)
def test_origin(url: str, expected: str) -> None:
    assert origin(url) == expected


def test_key_in_both_forms() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    raw = base64.urlsafe_b64encode(scalar).decode().rstrip("=")
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    sec1 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    for text in (raw, pkcs8, sec1, f"\n{raw}\n"):
        loaded = load_private_key(text)
        assert loaded.private_numbers() == key.private_numbers()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("AAAA", "32-octet"),
        ("A" * 43, "not a valid P-256 private key"),  # the scalar 0
        ("not a key!", "PEM key or a base64url"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "PEM"),
    ],
)
def test_bad_keys(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        load_private_key(text)


def test_other_curves_refused() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(ValueError, match="P-256"):
        load_private_key(pem)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("GATEWAY_IMAP_URL", "imap://127.0.0.1:143")
    monkeypatch.setenv("GATEWAY_REDIS_URL", "redis://127.0.0.1:6379")
    return monkeypatch


def _keys_command() -> tuple[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "vapid-keys"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    private_line, public_line = out.strip().splitlines()
    name, _, private = private_line.partition("=")
    assert name == "GATEWAY_WEBPUSH_VAPID_PRIVATE_KEY"
    assert public_line.startswith("# public key (applicationServerKey): ")
    return private, public_line.rsplit(" ", 1)[1]


def test_settings_and_the_keys_command(env: pytest.MonkeyPatch) -> None:
    assert Vapid.from_settings(load_settings()) is None
    private, public = _keys_command()
    env.setenv("GATEWAY_WEBPUSH_VAPID_PRIVATE_KEY", private)
    with pytest.raises(ConfigError, match="go together"):
        load_settings()
    env.setenv("GATEWAY_WEBPUSH_VAPID_SUBJECT", "mailto:ops@example.com")
    settings = load_settings()
    assert private not in repr(settings)
    vapid = Vapid.from_settings(settings)
    assert vapid is not None and vapid.public_key_b64url == public
    assert private not in repr(vapid)
    verify_vapid(vapid.authorization("https://push.example.net/x"))
    env.delenv("GATEWAY_WEBPUSH_VAPID_PRIVATE_KEY")
    with pytest.raises(ConfigError, match="go together"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GATEWAY_WEBPUSH_VAPID_SUBJECT", "ops@example.com", "mailto: or https: URI"),
        ("GATEWAY_WEBPUSH_VAPID_SUBJECT", "http://example.com", "mailto: or https: URI"),
        ("GATEWAY_WEBPUSH_VAPID_PRIVATE_KEY", "short", "GATEWAY_WEBPUSH_VAPID_PRIVATE_KEY: must"),
    ],
)
def test_bad_settings(env: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    env.setenv("GATEWAY_WEBPUSH_VAPID_SUBJECT", "mailto:ops@example.com")
    env.setenv("GATEWAY_WEBPUSH_VAPID_PRIVATE_KEY", _keys_command()[0])
    env.setenv(name, value)
    with pytest.raises(ConfigError, match=message) as error:
        load_settings()
    assert "short" not in str(error.value)
