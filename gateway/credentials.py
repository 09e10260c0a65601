"""What an upstream login needs: the user's credentials and where their request came from.

Kept in memory only and never logged (the reprs hide secrets). Bearer tokens are passed through
to the upstream as they are (RFC 7628 OAUTHBEARER or XOAUTH2): the gateway never checks them
itself, the upstream does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Mechanism(enum.Enum):
    """How the user proves who they are to the upstream."""

    PASSWORD = "password"  # noqa: S105 (a name, not a password): AUTHENTICATE PLAIN or LOGIN
    BEARER = "bearer"  # AUTHENTICATE OAUTHBEARER or XOAUTH2


@dataclass(frozen=True)
class Origin:
    """The address the user's request came from, told to the upstream with ID (RFC 2971).

    The upstream (Dovecot with ``login_trusted_networks``) then keeps its per-client
    authentication penalty and limits for this address instead of the gateway's own.
    """

    address: str
    port: int | None = None


@dataclass(frozen=True)
class ActingFor:
    """Whom a master user's (or admin's) password logs in as: the user, who is absent (a
    background watcher of their push subscriptions).

    ``separator`` empty: SASL PLAIN with the user as authorization identity (RFC 4616; Dovecot
    master users, Cyrus admins); otherwise ``LOGIN user<separator>master`` (Dovecot's
    ``auth_master_user_separator``), for servers set up that way.
    """

    user: str
    separator: str = ""


@dataclass(frozen=True)
class Credentials:
    """A user's upstream credentials and the origin of the request that brought them.

    ``username`` may be empty for a bearer token that names no user; ``secret`` is the
    password or the token. With ``acting_for``, ``username`` and ``secret`` are a master
    user's, who logs in as ``acting_for.user``.
    """

    username: str
    secret: str = field(repr=False)
    mechanism: Mechanism = Mechanism.PASSWORD
    origin: Origin | None = None
    acting_for: ActingFor | None = None

    @property
    def user(self) -> str:
        """The user the login is for: the one acted for, else the one logging in."""
        return self.acting_for.user if self.acting_for is not None else self.username
