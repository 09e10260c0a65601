"""Push tokens (gateway.push.tokens) on their own: what a token binds, and every way to forge,
stretch or move one is refused."""

from __future__ import annotations

import base64

from gateway.auth import Principal, account_id_for
from gateway.credentials import Credentials
from gateway.imap.pool import Login
from gateway.push.tokens import mint, token_key, verify

SECRET = b"s" * 32
KEY = token_key(SECRET)
NOW = 1_800_000_000.0
PASSWORD = "correct horse battery staple"


def principal(identity: str, username: str | None = None) -> Principal:
    login = Login(identity, Credentials(username or identity, PASSWORD))
    return Principal(login, account_id_for(SECRET, identity))


def test_a_token_says_whose_account_and_until_when() -> None:
    alice = principal("alice")
    token, says = mint(KEY, alice, ttl=120, stream_seconds=3600, now=NOW)
    assert verify(KEY, token, NOW + 119) == says
    assert says.account_id == alice.account_id
    assert (says.expires, says.stream_until) == (NOW + 120, NOW + 3600)


def test_compact_url_safe_and_no_secret_inside() -> None:
    token, _ = mint(KEY, principal("alice", "Alice@Example.COM"), ttl=120, stream_seconds=3600)
    assert len(token) < 120
    assert set(token) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    decoded = b"".join(
        base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in token.split(".")[1:]
    )
    for secret in (PASSWORD, "alice", "Alice@Example.COM"):
        assert secret.encode() not in decoded and secret not in token


def test_expired_refused() -> None:
    token, _ = mint(KEY, principal("alice"), ttl=120, stream_seconds=3600, now=NOW)
    assert verify(KEY, token, NOW + 120) is None
    assert verify(KEY, token, NOW + 10_000) is None


def test_every_altered_character_refused() -> None:
    token, _ = mint(KEY, principal("alice"), ttl=120, stream_seconds=3600, now=NOW)
    for i, char in enumerate(token):
        for other in {"A", "b", "-", "_", ".", "!", "="} - {char}:
            assert verify(KEY, token[:i] + other + token[i + 1 :], NOW) is None, (i, other)
    assert verify(KEY, token + "A", NOW) is None
    assert verify(KEY, token[:-1], NOW) is None


def test_payload_of_another_token_refused() -> None:
    """Alice's MAC on Bob's payload (or a longer lifetime spliced in) does not verify."""
    alice, _ = mint(KEY, principal("alice"), ttl=120, stream_seconds=3600, now=NOW)
    bob, _ = mint(KEY, principal("bob"), ttl=120, stream_seconds=3600, now=NOW)
    longer, _ = mint(KEY, principal("alice"), ttl=3600, stream_seconds=86400, now=NOW)
    version, alice_payload, alice_mac = alice.split(".")
    assert verify(KEY, f"{version}.{bob.split('.')[1]}.{alice_mac}", NOW) is None
    assert verify(KEY, f"{version}.{longer.split('.')[1]}.{alice_mac}", NOW) is None
    assert verify(KEY, f"{version}.{alice_payload}.{bob.split('.')[2]}", NOW) is None


def test_another_secret_refuses() -> None:
    token, _ = mint(KEY, principal("alice"), ttl=120, stream_seconds=3600, now=NOW)
    assert verify(token_key(b"t" * 32), token, NOW) is None
    assert token_key(SECRET) != SECRET


def test_garbage_refused() -> None:
    for garbage in ("", ".", "..", "p1..", "p1.AAAA.AAAA", "p2.x.y", "é.é.é", "p1." + "A" * 500):
        assert verify(KEY, garbage, NOW) is None


def test_identity_bound_not_login_spelling() -> None:
    """The same upstream identity however it logged in; another identity differs."""
    _, one = mint(KEY, principal("alice", "ALICE"), ttl=120, stream_seconds=3600, now=NOW)
    _, two = mint(KEY, principal("alice", "alice"), ttl=120, stream_seconds=3600, now=NOW)
    _, bob = mint(KEY, principal("bob"), ttl=120, stream_seconds=3600, now=NOW)
    assert one.identity == two.identity != bob.identity
    assert "alice" not in one.identity


def test_stream_lifetime_never_shorter_than_opening() -> None:
    _, says = mint(KEY, principal("alice"), ttl=300, stream_seconds=60, now=NOW)
    assert says.stream_until == says.expires == NOW + 300
