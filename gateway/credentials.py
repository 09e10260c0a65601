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
class Credentials:
    """A user's upstream credentials and the origin of the request that brought them.

    ``username`` may be empty for a bearer token that names no user; ``secret`` is the
    password or the token.
    """

    username: str
    secret: str = field(repr=False)
    mechanism: Mechanism = Mechanism.PASSWORD
    origin: Origin | None = None
