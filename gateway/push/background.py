"""Watching without the user's password: the logins of background watchers (issue 17).

A user with live push subscriptions (RFC 8620 7.2) and no client connected has no credentials
in any replica's keeper, yet mail other clients deliver or change must still be pushed. With
GATEWAY_IMAP_MASTER_USER set, the watch manager (push/watch.py) watches such accounts too,
logging in as the master user acting for the user: AUTHENTICATE PLAIN with the user as
authorization identity (RFC 4616; Dovecot master users, Cyrus admins) or Dovecot's
``user<separator>master`` (GATEWAY_IMAP_MASTER_LOGIN). The user is named by the login the
account's owner last used for PushSubscription/set (``jg:{a}:push-login``); the account id is a
keyed hash of the upstream's identity, so that name is checked before use: the login's identity
must map to the very account (``account_id_for``), else nothing is watched. A misconfigured
master user, or a login name that now belongs to someone else, never watches another user's
mail.

Without master credentials nothing here runs: subscriptions still get every change made
through the gateway (the journal's commits), but not those of other clients
(``background_watching`` tells the Session and README).

The master password lives in the settings (a SecretStr) and in the Credentials built here, in
memory only (their repr hides it); refusals are logged with the account id alone.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from gateway.auth import Principal, account_id_for
from gateway.cache.store import STORE_UNAVAILABLE, SecretSource
from gateway.cache.watches import WatchStore
from gateway.config import Settings, master_login_separator
from gateway.credentials import ActingFor, Credentials
from gateway.imap.errors import AuthenticationFailed, ImapError
from gateway.imap.pool import ImapPool

log = logging.getLogger(__name__)

# Watchers one replica runs for subscribed accounts alone (each holds one upstream IMAP
# connection, outside the pool's limits); the accounts past it are left to other replicas.
MAX_BACKGROUND_WATCHERS = 500
# Subscribed accounts read from jg:push-subscribed per full round, in turn (one ZRANGE, and one
# read-only EVAL each in one pipeline).
PAGE_SIZE = 500
# A background login whose identity was checked is used this long before it is checked again
# (one extra upstream login per watcher start otherwise).
VERIFIED_SECONDS = 3600.0
# After the upstream refused the master user itself (a wrong password: every account would be
# refused alike), no background login is tried on this replica for this long.
MASTER_REFUSED_SECONDS = 300.0
# After an account's background login was refused (no such user, or its identity maps to
# another account), that account is not tried again on this replica for this long.
ACCOUNT_REFUSED_SECONDS = 300.0
# Accounts remembered (verified logins, refusals) at most; past it the oldest go.
MAX_REMEMBERED = 4 * MAX_BACKGROUND_WATCHERS

# Dovecot's response code when the master user is fine but may not (or cannot) act for the
# user named, unlike AUTHENTICATIONFAILED for the master's own credentials.
_AUTHORIZATION_FAILED = "AUTHORIZATIONFAILED"


def background_watching(settings: Settings) -> bool:
    """Whether changes made by other clients are pushed to subscribed users who have no
    client connected (a master user is configured)."""
    return settings.imap_master_user is not None and settings.imap_master_password is not None


class BackgroundLogins:
    """The background principals of subscribed accounts, checked; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        pool: ImapPool,
        secret: SecretSource,
        store: WatchStore,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if settings.imap_master_user is None or settings.imap_master_password is None:
            raise ValueError("background watching needs a master user")
        self._master = settings.imap_master_user
        self._password = settings.imap_master_password
        self._separator = master_login_separator(settings.imap_master_login) or ""
        self._pool = pool
        self._secret = secret
        self._store = store
        self._clock = clock
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._refused: OrderedDict[str, float] = OrderedDict()
        self._paused_until = 0.0

    def __repr__(self) -> str:
        return f"<BackgroundLogins master={self._master!r} verified={len(self._verified)}>"

    def paused(self) -> bool:
        """The upstream refused the master user lately: try no background login now."""
        return self._clock() < self._paused_until

    def may_try(self, account_id: str) -> bool:
        """Neither the master user nor this account was refused lately."""
        if self.paused():
            return False
        until = self._refused.get(account_id)
        if until is None:
            return True
        if until > self._clock():
            return False
        del self._refused[account_id]
        return True

    async def principal(self, account_id: str) -> Principal | None:
        """The master user's login for ``account_id``'s owner, its identity checked to map to
        ``account_id``; None when there is none (not subscribed, no login named, refused, a
        mismatch, the upstream or Redis unavailable: all logged, the password never)."""
        if not self.may_try(account_id):
            return None
        try:
            # Only for subscriptions: a listener's account whose credentials were refused is
            # not watched with the master's instead.
            if account_id not in await self._store.subscribed([account_id]):
                return None
            user = await self._store.push_login(account_id)
        except STORE_UNAVAILABLE as exc:
            log.warning("background login of %s: %s", account_id, type(exc).__name__)
            return None
        if not user:
            return None
        if self._separator and self._separator in user:
            log.warning(
                "background login for account %s: its login name holds the master login "
                "separator; not watching it",
                account_id,
            )
            self._refuse(account_id)
            return None
        known = self._verified.get(account_id)
        if known is not None:
            principal, until = known
            acting_for = principal.login.credentials.acting_for
            if until > self._clock() and acting_for is not None and acting_for.user == user:
                return principal
            del self._verified[account_id]
        try:
            login = await self._pool.identify(self._credentials(user))
        except AuthenticationFailed as exc:
            self._login_refused(account_id, exc)
            return None
        except ImapError as exc:
            log.warning("background login of %s failed: %s", account_id, type(exc).__name__)
            return None
        if account_id_for(await self._secret(), login.identity) != account_id:
            log.error(
                "background login for account %s reached another account's mailbox: its login "
                "name now belongs to someone else, or the master login is misconfigured; not "
                "watching it",
                account_id,
            )
            self._refuse(account_id)
            return None
        principal = Principal(login, account_id)
        self._verified[account_id] = (principal, self._clock() + VERIFIED_SECONDS)
        self._verified.move_to_end(account_id)
        while len(self._verified) > MAX_REMEMBERED:
            self._verified.popitem(last=False)
        return principal

    def refused(self, account_id: str, principal: Principal) -> None:
        """The upstream refused a background login that had worked (a watcher's reconnect)."""
        del principal
        self._verified.pop(account_id, None)
        self._login_refused(account_id, None)

    def _credentials(self, user: str) -> Credentials:
        return Credentials(
            self._master,
            self._password.get_secret_value(),
            acting_for=ActingFor(user, self._separator),
        )

    def _login_refused(self, account_id: str, exc: AuthenticationFailed | None) -> None:
        if exc is not None and exc.code == _AUTHORIZATION_FAILED:
            log.warning(
                "background login for account %s refused: the upstream does not let the "
                "master user act for its owner",
                account_id,
            )
            self._refuse(account_id)
            return
        if not self.paused():  # logins started together are refused together: said once
            log.error(
                "the upstream refused the master user GATEWAY_IMAP_MASTER_USER (background "
                "login for account %s); no background watching for %d s",
                account_id,
                int(MASTER_REFUSED_SECONDS),
            )
        self._paused_until = self._clock() + MASTER_REFUSED_SECONDS

    def _refuse(self, account_id: str) -> None:
        self._refused[account_id] = self._clock() + ACCOUNT_REFUSED_SECONDS
        self._refused.move_to_end(account_id)
        while len(self._refused) > MAX_REMEMBERED:
            self._refused.popitem(last=False)
