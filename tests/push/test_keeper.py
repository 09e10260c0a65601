"""The credential keeper: newest first, expiring, bounded, forgetting, never showing secrets."""

from __future__ import annotations

import pytest

from gateway.auth import Principal
from gateway.credentials import Credentials
from gateway.imap.pool import Login
from gateway.push.keeper import MAX_PER_ACCOUNT, CredentialKeeper

SECRET = "s3cret-password"


def who(user: str, secret: str = SECRET, account: str = "a1") -> Principal:
    return Principal(Login(f"id-{user}", Credentials(user, secret)), account)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_newest_first_and_one_entry_per_credential() -> None:
    keeper = CredentialKeeper(60)
    keeper.remember("a1", who("alice"))
    keeper.remember("a1", who("alice", "other"))
    keeper.remember("a1", who("alice"))  # seen again: newest now
    assert keeper.candidates("a1") == [who("alice"), who("alice", "other")]
    assert keeper.candidates("a2") == []


def test_credentials_expire_after_their_last_use() -> None:
    clock = Clock()
    keeper = CredentialKeeper(60, clock=clock)
    keeper.remember("a1", who("alice"))
    clock.now += 59
    keeper.remember("a1", who("alice", "other"))
    clock.now += 2
    assert keeper.candidates("a1") == [who("alice", "other")]
    clock.now += 60
    assert keeper.candidates("a1") == []
    assert keeper.accounts() == []


def test_forget_drops_refused_credentials() -> None:
    keeper = CredentialKeeper(60)
    keeper.remember("a1", who("alice"))
    keeper.remember("a1", who("alice", "new"))
    keeper.forget("a1", who("alice", "new"))
    assert keeper.candidates("a1") == [who("alice")]
    keeper.forget("a1", who("alice"))
    keeper.forget("a9", who("alice"))
    assert keeper.accounts() == []


def test_bounded_per_account_and_in_accounts_least_recently_used_first() -> None:
    keeper = CredentialKeeper(60, max_accounts=2)
    for n in range(MAX_PER_ACCOUNT + 3):
        keeper.remember("a1", who("alice", f"pw{n}"))
    assert len(keeper.candidates("a1")) == MAX_PER_ACCOUNT
    keeper.remember("a2", who("bob", account="a2"))
    keeper.remember("a1", who("alice"))  # a1 used again: a2 is now the oldest
    keeper.remember("a3", who("carol", account="a3"))
    assert sorted(keeper.accounts()) == ["a1", "a3"]


def test_no_secret_in_a_repr_and_no_other_accounts_credentials() -> None:
    keeper = CredentialKeeper(60)
    keeper.remember("a1", who("alice"))
    assert SECRET not in repr(keeper)
    assert SECRET not in repr(keeper.candidates("a1"))
    with pytest.raises(ValueError):
        keeper.remember("a2", who("alice"))
