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

That check needs an identity the upstream gives: the INBOX's id (RFC 8474 MAILBOXID, Dovecot's
X-GUID). An upstream that keeps none has the gateway name the identity after the user name
asked for (gateway.upstream.fallback_identity), which maps to the account whatever mailbox the
login reached: there background watching is refused altogether (logged once, as an error), and
subscriptions get only the changes made through the gateway.

A watcher's reconnect refused (the user disabled upstream, their name changed) refuses that
account for ACCOUNT_REFUSED_SECONDS; background logins stop for everyone only when the master
credentials themselves are refused (AUTHENTICATIONFAILED where another account's login, which
worked, is refused alike; or, with no such account to ask, at a first login).

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
from gateway.imap.pool import ImapPool, Login
from gateway.upstream import identifies_by_mailbox

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
        # The upstream gives no mailbox id: identities cannot be checked (for good).
        self._unverifiable = False

    def __repr__(self) -> str:
        return f"<BackgroundLogins master={self._master!r} verified={len(self._verified)}>"

    def paused(self) -> bool:
        """The upstream refused the master user lately, or cannot tell users apart: try no
        background login now."""
        return self._unverifiable or self._clock() < self._paused_until

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
            await self._login_refused(account_id, exc, first=True)
            return None
        except ImapError as exc:
            log.warning("background login of %s failed: %s", account_id, type(exc).__name__)
            return None
        if not self._identified(login):
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

    async def refused(self, account_id: str, principal: Principal) -> None:
        """The upstream refused a background login that had worked (a watcher's reconnect):
        that account is refused, unless a fresh login shows the master user itself refused
        (then every background login pauses)."""
        self._verified.pop(account_id, None)
        try:
            await self._pool.identify(principal.login.credentials)
        except AuthenticationFailed as exc:
            await self._login_refused(account_id, exc, first=False)
            return
        except ImapError as exc:
            log.warning("background login of %s failed: %s", account_id, type(exc).__name__)
        # Accepted again, or the upstream unreachable: the account waits its pause either way
        # (a login that comes and goes is not retried at every round).
        self._refuse(account_id)

    def _identified(self, login: Login) -> bool:
        """Whether ``login``'s identity comes from the upstream (an INBOX id); if not, the
        account check cannot fail, so background watching stops here for good."""
        if identifies_by_mailbox(login.identity):
            return True
        if not self._unverifiable:
            log.error(
                "the upstream gives no INBOX id (OBJECTID/MAILBOXID or X-GUID): a background "
                "login cannot be checked to reach its own user's mailbox, so subscribed "
                "accounts are not watched with GATEWAY_IMAP_MASTER_USER; pushes carry the "
                "changes made through the gateway only"
            )
        self._unverifiable = True
        return False

    def _credentials(self, user: str) -> Credentials:
        return Credentials(
            self._master,
            self._password.get_secret_value(),
            acting_for=ActingFor(user, self._separator),
        )

    async def _login_refused(
        self, account_id: str, exc: AuthenticationFailed, *, first: bool
    ) -> None:
        """Refuse the account, or pause every background login when the master user itself
        is refused: Dovecot says AUTHORIZATIONFAILED for a user it will not act for, but
        other upstreams answer AUTHENTICATIONFAILED for an unknown user too, so that is
        checked against another account's login that worked (``first``: a first login with
        no such account to ask pauses, as a wrong master password would refuse them all)."""
        if exc.code == _AUTHORIZATION_FAILED or not await self._master_refused(account_id, first):
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

    async def _master_refused(self, account_id: str, first: bool) -> bool:
        """Whether the latest other account whose login worked is refused alike."""
        other = next((p for a, (p, _) in reversed(self._verified.items()) if a != account_id), None)
        if other is None:
            return first
        try:
            await self._pool.identify(other.login.credentials)
        except AuthenticationFailed as exc:
            return exc.code != _AUTHORIZATION_FAILED
        except ImapError:
            return first
        return False

    def _refuse(self, account_id: str) -> None:
        self._refused[account_id] = self._clock() + ACCOUNT_REFUSED_SECONDS
        self._refused.move_to_end(account_id)
        while len(self._refused) > MAX_REMEMBERED:
            self._refused.popitem(last=False)
