"""The caller's identities as other packages need them (EmailSubmission/set: which identity,
and may it send from this address). Contract B of issue 14.

Every account with an address of its own (gateway.senders.own_address) has its default
identity: that address, ``mayDelete`` false, its id derived from the address. What the user
changed of it (name, signatures ...) is stored under the same id. Accounts without an address
have only the identities they created.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.cache.identities import IdentityRecord
from gateway.env import RequestEnv
from gateway.translators.identity.policy import may_send_from, user_address
from gateway.translators.identity.stored import default_identity_id, stored

__all__ = ["IdentityRecord", "identities", "identity_by_id", "may_send_from", "with_default"]


async def identities(env: RequestEnv) -> dict[str, IdentityRecord]:
    """The account's identities by id, the default one included."""
    return with_default(env, (await stored(env)).records)


async def identity_by_id(env: RequestEnv, identity_id: str) -> IdentityRecord | None:
    return (await identities(env)).get(identity_id)


def with_default(env: RequestEnv, records: dict[str, IdentityRecord]) -> dict[str, IdentityRecord]:
    """``records`` (the stored identities) with the default identity computed and merged in:
    the user's changes to it are kept, its address and ``mayDelete`` are never taken from
    storage."""
    address = user_address(env)
    if address is None:
        return dict(records)
    default_id = default_identity_id(address)
    kept = records.get(default_id)
    default = (
        replace(kept, email=address, may_delete=False)
        if kept is not None
        else IdentityRecord(default_id, "", address, None, None, "", "", may_delete=False)
    )
    return {default_id: default, **{k: v for k, v in records.items() if k != default_id}}
