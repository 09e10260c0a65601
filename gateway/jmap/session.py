"""The Session object (RFC 8620 2) and the URL paths the HTTP layer mounts.

The paths are constants here so the URLs advertised to clients and the routes served
cannot drift apart.
"""

from __future__ import annotations

import hashlib
import re
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
# RFC 8887 3: advertised as the WebSocket capability's url (ws:// or wss://).
WS_PATH = "/jmap/ws"

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
    session = _content(username, accounts, primary_accounts, capabilities, base_url)
    session["state"] = _digest(session)
    return session


def _content(
    username: str,
    accounts: Mapping[str, AccountInfo],
    primary_accounts: Mapping[str, str],
    capabilities: Mapping[str, JsonObject],
    base_url: str,
) -> JsonObject:
    """The Session object without its state, which is the digest of this."""
    # RFC 8620 2: the capabilities object MUST include urn:ietf:params:jmap:core.
    if CORE not in capabilities:
        raise ValueError("capabilities must include the core capability")
    for capability, account_id in primary_accounts.items():
        if account_id not in accounts:
            raise ValueError(f"primary account {account_id!r} for {capability} is not listed")
    base = base_url.rstrip("/")
    return {
        "capabilities": dict(capabilities),
        "accounts": {account_id: info.to_json() for account_id, info in accounts.items()},
        "primaryAccounts": dict(primary_accounts),
        "username": username,
        "apiUrl": base + API_PATH,
        "downloadUrl": base + DOWNLOAD_TEMPLATE,
        "uploadUrl": base + UPLOAD_TEMPLATE,
        "eventSourceUrl": base + EVENT_SOURCE_TEMPLATE,
    }


class PersonalSession:
    """The Session of a server that gives each user exactly their own account.

    Everything in it but the username and the account id is fixed for the process, so the
    canonical JSON its state digests is encoded once, with stand-ins for those two; a
    request's ``sessionState`` (RFC 8620 3.4) is then the digest of those pieces with the
    caller's values between them: exactly the Session's state, without building the Session
    and encoding its capabilities on every API request.
    """

    def __init__(
        self,
        capabilities: Mapping[str, JsonObject],
        account_capabilities: Mapping[str, JsonObject],
        base_url: str,
    ) -> None:
        self.capabilities = dict(capabilities)
        self.account_capabilities = dict(account_capabilities)
        self.base_url = base_url
        stand_in = _content(
            _USERNAME_STAND_IN,
            self.accounts(_USERNAME_STAND_IN, _ACCOUNT_STAND_IN),
            self._primary(_ACCOUNT_STAND_IN),
            self.capabilities,
            base_url,
        )
        template = orjson.dumps(stand_in, option=orjson.OPT_SORT_KEYS)
        # The account id is the only key that varies, and the only key of its object, so
        # sorting places every other key where it is for any caller.
        split = _STAND_INS.split(template)
        self._pieces: tuple[bytes, ...] = tuple(split[0::2])
        self._holes: tuple[bytes, ...] = tuple(split[1::2])
        # "name" and "username"; the account's key and its primaryAccounts entries. A stand-in
        # anywhere else (only a fixed value holding a NUL could) would be replaced too.
        expected = [_USERNAME_JSON] * 2 + [_ACCOUNT_JSON] * (1 + len(self.account_capabilities))
        if sorted(self._holes) != sorted(expected):
            raise ValueError("a capability object or the base URL holds a session stand-in")

    def accounts(self, username: str, account_id: str) -> dict[str, AccountInfo]:
        account = AccountInfo(
            name=username,
            is_personal=True,
            is_read_only=False,
            account_capabilities=self.account_capabilities,
        )
        return {account_id: account}

    def build(self, username: str, account_id: str) -> JsonObject:
        """The Session object of the user ``username`` whose account is ``account_id``."""
        return build_session(
            username=username,
            accounts=self.accounts(username, account_id),
            primary_accounts=self._primary(account_id),
            capabilities=self.capabilities,
            base_url=self.base_url,
        )

    def state(self, username: str, account_id: str) -> str:
        """``build(username, account_id)["state"]``, computed from the encoded pieces."""
        values = {_USERNAME_JSON: orjson.dumps(username), _ACCOUNT_JSON: orjson.dumps(account_id)}
        digest = hashlib.sha256(self._pieces[0])
        for hole, piece in zip(self._holes, self._pieces[1:], strict=True):
            digest.update(values[hole])
            digest.update(piece)
        return digest.hexdigest()[:_STATE_LENGTH]

    def _primary(self, account_id: str) -> dict[str, str]:
        """RFC 8620 2: the account is primary for every capability it lists."""
        return dict.fromkeys(self.account_capabilities, account_id)


# Stand-ins no username, account id or setting holds (NUL), and their JSON encodings.
_USERNAME_STAND_IN = "\x00username"
_ACCOUNT_STAND_IN = "\x00account"
_USERNAME_JSON = orjson.dumps(_USERNAME_STAND_IN)
_ACCOUNT_JSON = orjson.dumps(_ACCOUNT_STAND_IN)
_STAND_INS = re.compile(b"(" + re.escape(_USERNAME_JSON) + b"|" + re.escape(_ACCOUNT_JSON) + b")")


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
