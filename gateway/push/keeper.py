"""Credentials a watcher may log in with, kept in this process's memory only.

A browser's push stream authenticates with a token that carries no password, so the watcher of
its account logs in with the credentials of the account's latest header-authenticated listener
or token mint on this replica (contracts15 Q1). They never leave the process: not to Redis,
not to logs, not to a repr. Each entry lives ``ttl`` seconds after its last use; the number of
accounts and of credentials per account are bounded, the least recently used going first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from gateway.auth import Principal
from gateway.credentials import Mechanism

# Accounts whose credentials one replica keeps; past it the least recently used go.
MAX_ACCOUNTS = 50_000
# Distinct credentials kept per account (a user with a few devices, a password just changed).
MAX_PER_ACCOUNT = 4

# What tells two credentials apart; the request's origin (client address and port) is not
# part of it: the same credentials from two connections are one entry, the newest origin kept.
CredentialKey = tuple[str, str, str, Mechanism]


# Per account: credentials -> (the principal that brought them last, expiry).
_Entries = OrderedDict[CredentialKey, tuple[Principal, float]]


def credential_key(principal: Principal) -> CredentialKey:
    """``principal``'s credentials, whatever connection brought them."""
    credentials = principal.login.credentials
    return (
        principal.login.identity,
        credentials.username,
        credentials.secret,
        credentials.mechanism,
    )


class CredentialKeeper:
    """Per account, the credentials seen lately, newest first; see the module docstring."""

    def __init__(
        self,
        ttl: float,
        *,
        max_accounts: int = MAX_ACCOUNTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max_accounts = max_accounts
        self._clock = clock
        # account id -> (key -> (principal, expiry)), both in least-recently-used order.
        self._accounts: OrderedDict[str, _Entries] = OrderedDict()

    def __repr__(self) -> str:
        return f"<CredentialKeeper accounts={len(self._accounts)}>"

    def remember(self, account_id: str, principal: Principal) -> None:
        """``principal`` just proved itself (a listener connected, a token was minted)."""
        if principal.account_id != account_id:
            raise ValueError("credentials of another account")
        entries = self._accounts.get(account_id)
        if entries is None:
            entries = self._accounts[account_id] = OrderedDict()
        self._accounts.move_to_end(account_id)
        key = credential_key(principal)
        entries.pop(key, None)
        entries[key] = (principal, self._clock() + self._ttl)
        while len(entries) > MAX_PER_ACCOUNT:
            entries.popitem(last=False)
        while len(self._accounts) > self._max_accounts:
            self._accounts.popitem(last=False)

    def forget(self, account_id: str, principal: Principal) -> None:
        """The upstream refused ``principal``: never offer it again."""
        entries = self._accounts.get(account_id)
        if entries is None:
            return
        entries.pop(credential_key(principal), None)
        if not entries:
            del self._accounts[account_id]

    def candidates(self, account_id: str) -> list[Principal]:
        """The account's unexpired credentials, newest first."""
        entries = self._accounts.get(account_id)
        if entries is None:
            return []
        now = self._clock()
        for key in [k for k, (_, expiry) in entries.items() if expiry <= now]:
            del entries[key]
        if not entries:
            del self._accounts[account_id]
            return []
        return [principal for principal, _ in reversed(entries.values())]

    def accounts(self) -> list[str]:
        """Accounts with credentials kept (some may have expired since; candidates() says)."""
        return list(self._accounts)
