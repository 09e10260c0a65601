"""The account a /copy method copies from (RFC 8620 5.4, 6.3), checked the same for every one.

The dispatcher checks ``accountId`` (the account copied to) before the method runs; the
account copied from is the method's own argument, and its errors have their own names.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.jmap.dispatch import AccountAccess
from gateway.jmap.errors import MethodError


def check_from_account(accounts: Mapping[str, AccountAccess], from_account_id: str) -> None:
    """fromAccountNotFound unless ``fromAccountId`` is one of the caller's accounts."""
    if from_account_id not in accounts:
        raise MethodError("fromAccountNotFound", f"No account {from_account_id!r}")


def not_between_accounts(what: str) -> MethodError:
    """The error for a copy between two of the caller's accounts, which needs work the gateway
    does not do: it serves one account per user, so there is never a second one today."""
    return MethodError(
        "fromAccountNotSupportedByMethod", f"Copying {what} between accounts is not implemented"
    )
