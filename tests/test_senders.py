"""The sender policy (GATEWAY_IDENTITY_ADDRESSES) and the user's own address."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_settings
from gateway.senders import SenderPolicy, check_domain, is_address, own_address


@pytest.mark.parametrize(
    ("name", "domain", "expected"),
    [
        ("alice", "example.com", "alice@example.com"),
        ("Alice", "Example.COM", "alice@example.com"),
        ("alice@other.org", "example.com", "alice@other.org"),
        ("ALICE@Other.Org", None, "alice@other.org"),
        ("alice", None, None),
        ("", "example.com", None),
        ("al ice", "example.com", None),
        ("alice@", None, None),
    ],
)
def test_own_address(name: str, domain: str | None, expected: str | None) -> None:
    assert own_address(name, domain) == expected


def test_default_policy_allows_only_the_users_own_address() -> None:
    policy = SenderPolicy.parse("{address}")
    assert policy.allows("alice@example.com", "alice@example.com")
    assert policy.allows("ALICE@example.COM", "alice@example.com")
    assert not policy.allows("bob@example.com", "alice@example.com")
    assert not policy.allows("alice+x@example.com", "alice@example.com")
    assert not policy.allows("alice@example.com", None)


def test_placeholders_and_wildcards() -> None:
    policy = SenderPolicy.parse(
        "{address}, {local}+*@{domain} ,sales@example.org,*@team.example.org"
    )
    own = "alice@example.com"
    assert policy.allows("alice+news@example.com", own)
    assert policy.allows("sales@example.org", own)
    assert policy.allows("anyone@team.example.org", own)
    assert not policy.allows("alice+@example.com", own)  # * is one character or more
    assert not policy.allows("bob+x@example.com", own)
    assert not policy.allows("alice+x@evil.com", own)
    assert not policy.allows("x@sub.team.example.org.evil", own)
    # Without an address of their own, only the literal patterns apply.
    assert policy.allows("sales@example.org", None)
    assert not policy.allows("alice+x@example.com", None)


def test_regex_syntax_in_addresses_is_literal() -> None:
    policy = SenderPolicy.parse("a.b@example.com")
    assert policy.allows("a.b@example.com", None)
    assert not policy.allows("axb@example.com", None)
    # A local part may hold regex metacharacters; they match only themselves.
    mine = SenderPolicy.parse("{address}")
    assert mine.allows("a+b$c@example.com", "a+b$c@example.com")
    assert not mine.allows("aab$c@example.com", "a+b$c@example.com")


def test_a_wildcard_never_crosses_the_at_sign() -> None:
    policy = SenderPolicy.parse("*@example.com")
    assert not policy.allows("a@evil.org@example.com", None)
    assert not is_address("a@evil.org@example.com")


def test_long_addresses_are_refused_before_matching() -> None:
    policy = SenderPolicy.parse("*+*+*@example.com")
    assert not policy.allows("a+" * 200 + "@example.com", None)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " , ",
        "{address}x",
        "x{address}",
        "alice",
        "@example.com",
        "alice@",
        "a@b@c",
        "{domain}@example.com",
        "a@{local}",
        "a b@example.com",
        "{user}@example.com",
        ",".join(["a@example.com"] * 51),
    ],
)
def test_bad_patterns_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        SenderPolicy.parse(text)


def test_check_domain() -> None:
    assert check_domain("Example.COM.") == "example.com"
    for bad in ("", "-a.com", "a..com", "a_b.com", "x" * 64 + ".com"):
        with pytest.raises(ValueError):
            check_domain(bad)


def test_settings_refuse_a_bad_policy_or_domain() -> None:
    base = {"imap_url": "imap://127.0.0.1:1", "redis_url": "redis://127.0.0.1:1"}
    assert load_settings(**base).identity_addresses == "{address}"
    assert load_settings(**base, mail_domain="Example.COM").mail_domain == "example.com"
    with pytest.raises(ConfigError, match="GATEWAY_IDENTITY_ADDRESSES"):
        load_settings(**base, identity_addresses="{user}@example.com")
    with pytest.raises(ConfigError, match="GATEWAY_MAIL_DOMAIN"):
        load_settings(**base, mail_domain="not a domain")
