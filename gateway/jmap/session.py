"""The Session object (RFC 8620 2) and the URL paths the HTTP layer mounts.

The paths are constants here so the URLs advertised to clients and the routes served
cannot drift apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.jmap.capabilities import CORE
from gateway.jmap.dispatch import AccountAccess
from gateway.jmap.protocol import JsonObject

# RFC 8620 2.2: /.well-known/jmap redirects to the Session resource at SESSION_PATH.
SESSION_PATH = "/jmap/session"
API_PATH = "/jmap/api/"
DOWNLOAD_PATH = "/jmap/download/"
UPLOAD_PATH = "/jmap/upload/"
EVENT_SOURCE_PATH = "/jmap/eventsource/"

# RFC 6570 level-1 templates with exactly the variables RFC 8620 2 requires; the
# download type sits in the query, as RFC 8620 2 recommends, since it has a slash.
DOWNLOAD_TEMPLATE = DOWNLOAD_PATH + "{accountId}/{blobId}/{name}?accept={type}"
UPLOAD_TEMPLATE = UPLOAD_PATH + "{accountId}/"
EVENT_SOURCE_TEMPLATE = EVENT_SOURCE_PATH + "?types={types}&closeafter={closeafter}&ping={ping}"

_STATE_LENGTH = 16


@dataclass(frozen=True)
class AccountInfo:
    """One account as the Session object describes it."""

    name: str
    is_personal: bool
    is_read_only: bool
    account_capabilities: Mapping[str, JsonObject]

    def to_json(self) -> JsonObject:
        """Return the Account object (RFC 8620 2)."""
        return {
            "name": self.name,
            "isPersonal": self.is_personal,
            "isReadOnly": self.is_read_only,
            "accountCapabilities": dict(self.account_capabilities),
        }


def build_session(
    *,
    username: str,
    accounts: Mapping[str, AccountInfo],
    primary_accounts: Mapping[str, str],
    capabilities: Mapping[str, JsonObject],
    base_url: str,
) -> JsonObject:
    """Build the Session object; `state` changes exactly when anything else does."""
    # RFC 8620 2: the capabilities object MUST include urn:ietf:params:jmap:core.
    if CORE not in capabilities:
        raise ValueError("capabilities must include the core capability")
    for capability, account_id in primary_accounts.items():
        if account_id not in accounts:
            raise ValueError(f"primary account {account_id!r} for {capability} is not listed")
    base = base_url.rstrip("/")
    session: JsonObject = {
        "capabilities": dict(capabilities),
        "accounts": {account_id: info.to_json() for account_id, info in accounts.items()},
        "primaryAccounts": dict(primary_accounts),
        "username": username,
        "apiUrl": base + API_PATH,
        "downloadUrl": base + DOWNLOAD_TEMPLATE,
        "uploadUrl": base + UPLOAD_TEMPLATE,
        "eventSourceUrl": base + EVENT_SOURCE_TEMPLATE,
    }
    session["state"] = _digest(session)
    return session


def _digest(content: Any) -> str:
    """A short digest of the canonical JSON; sorted keys make it independent of order."""
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:_STATE_LENGTH]


def account_access(accounts: Mapping[str, AccountInfo]) -> dict[str, AccountAccess]:
    """Derive the dispatcher's access rules from the accounts the session advertises.

    RFC 8620 2: methods of a capability missing from accountCapabilities are rejected
    with accountNotSupportedByMethod; one source keeps the two views consistent.
    """
    return {
        account_id: AccountAccess(
            account_id=account_id,
            capabilities=frozenset(info.account_capabilities),
            read_only=info.is_read_only,
        )
        for account_id, info in accounts.items()
    }
