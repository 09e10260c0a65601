"""Identity/set (RFC 8621 6.3): the user's own sending identities.

Creates run first, then updates, then destroys (RFC 8620 5.3). Each identity is written on
its own (its METADATA entry, then Redis), so a refusal is the SetError of that identity alone
and leaves it as it was; the others stand.

The addresses a user may create identities for are the operator's (gateway.senders): any
other is ``forbiddenFrom``. The default identity (the user's own address) cannot be destroyed
(``mayDelete`` false) but its name, signatures, replyTo and bcc may change.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from gateway.cache.identities import IdentityRecord
from gateway.cache.store import STORE_UNAVAILABLE
from gateway.env import RequestEnv
from gateway.imap.errors import ImapError
from gateway.jmap.dispatch import CallContext
from gateway.jmap.errors import MethodError, SetError
from gateway.jmap.standard import check_if_in_state, parse_set
from gateway.translators.identity.lookup import with_default
from gateway.translators.identity.policy import may_send_from
from gateway.translators.identity.properties import PROPERTIES, render
from gateway.translators.identity.stored import erase, new_identity_id, stored, write
from gateway.translators.identity.values import (
    DEFAULTS,
    FIELDS,
    InvalidIdentity,
    identity_values,
)

log = logging.getLogger(__name__)

# What may break an Identity/set half way (a refusal is the SetError of one identity instead).
_BROKEN_OFF: tuple[type[Exception], ...] = (ImapError, *STORE_UNAVAILABLE)

# Identities one account may store (its default one included once changed): each is a
# METADATA entry and a Redis value kept for the account's life.
MAX_IDENTITIES = 100


async def identity_set(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    env = ctx.env
    args = parse_set(arguments, env.services.limits.max_objects_in_set)
    snapshot = await stored(env)
    check_if_in_state(args.if_in_state, snapshot.state)
    run = _Run(ctx, dict(snapshot.records), with_default(env, snapshot.records))
    try:
        created, not_created = await run.create_all(args.create or {})
        updated, not_updated = await run.update_all(args.update or {})
        destroyed, not_destroyed = await run.destroy_all(args.destroy or [])
        state = (await env.index.identities.snapshot()).state if run.done else snapshot.state
    except _BROKEN_OFF as exc:
        if not run.done:
            raise
        log.warning("Identity/set broke off after changes were made", exc_info=exc)
        # RFC 8620 3.6.2: some changes were made; the client must re-synchronise.
        raise MethodError(
            "serverPartialFail",
            "Part of the changes were made before the mail server or the gateway's state "
            "store became unavailable. Re-synchronise.",
        ) from exc
    return {
        "accountId": args.account_id,
        "oldState": snapshot.state,
        "newState": state,
        "created": created or None,
        "notCreated": _errors(not_created),
        "updated": updated or None,
        "notUpdated": _errors(not_updated),
        "destroyed": destroyed or None,
        "notDestroyed": _errors(not_destroyed),
    }


def _errors(errors: Mapping[str, SetError]) -> dict[str, SetError] | None:
    """The SetErrors themselves: the dispatcher files them and logs a serverFail's cause."""
    return dict(errors) or None


class _Run:
    """One Identity/set call: the stored records and every identity, kept current as it goes."""

    def __init__(
        self,
        ctx: CallContext[RequestEnv],
        stored: dict[str, IdentityRecord],
        every: dict[str, IdentityRecord],
    ) -> None:
        self.ctx = ctx
        self.env = ctx.env
        self.stored = stored
        self.every = every
        # Whether any identity was written: a break after that is a partial failure.
        self.done = False

    async def create_all(
        self, create: Mapping[str, dict[str, Any]]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, SetError]]:
        done: dict[str, dict[str, Any]] = {}
        failed: dict[str, SetError] = {}
        for creation_id, props in create.items():
            try:
                record = await self._create(props)
            except SetError as error:
                failed[creation_id] = error
                continue
            self.ctx.created_ids[creation_id] = record.id
            # RFC 8620 5.3: the server-set properties and the defaults the client left out.
            defaulted = {p: DEFAULTS[p] for p in DEFAULTS if p not in props}
            done[creation_id] = {"id": record.id, "mayDelete": True, **defaulted}
        return done, failed

    async def _create(self, props: dict[str, Any]) -> IdentityRecord:
        _check_names(props, allow_server_set=False)
        values = _values(props, creating=True)
        # RFC 8621 6.3: an address the user may not send from is forbiddenFrom.
        if not may_send_from(self.env, values["email"]):
            raise SetError(
                "forbiddenFrom", "the server does not let this user send from this address"
            )
        if len(self.stored) >= MAX_IDENTITIES:
            raise SetError("overQuota", f"an account keeps at most {MAX_IDENTITIES} identities")
        record = IdentityRecord(id=new_identity_id(), may_delete=True, **values)
        await write(self.env, record, created=True)
        self.done = True
        self.stored[record.id] = self.every[record.id] = record
        return record

    async def update_all(
        self, update: Mapping[str, dict[str, Any]]
    ) -> tuple[dict[str, None], dict[str, SetError]]:
        done: dict[str, None] = {}
        failed: dict[str, SetError] = {}
        for key, patch in update.items():
            try:
                record = self._find(key)
                await self._update(record, patch)
                done[record.id] = None
            except SetError as error:
                failed[key] = error
        return done, failed

    async def _update(self, record: IdentityRecord, patch: dict[str, Any]) -> None:
        current = render(record, tuple(PROPERTIES.names))
        _check_names(patch, allow_server_set=True, current=current)
        # RFC 8620 5.3: an immutable property may be "changed" to the value it has.
        if "email" in patch and patch["email"] != record.email:
            raise SetError.invalid_properties(["email"], "cannot change once created")
        changes = _values({k: v for k, v in patch.items() if k in FIELDS}, creating=False)
        new = replace(record, **changes)
        if new == record:
            return
        # The default identity is stored from its first change on, and then counts.
        first_stored = record.id not in self.stored
        if first_stored and len(self.stored) >= MAX_IDENTITIES:
            raise SetError("overQuota", f"an account keeps at most {MAX_IDENTITIES} identities")
        await write(self.env, new, created=False)
        self.done = True
        self.stored[new.id] = self.every[new.id] = new

    async def destroy_all(self, destroy: list[str]) -> tuple[list[str], dict[str, SetError]]:
        done: list[str] = []
        failed: dict[str, SetError] = {}
        for key in dict.fromkeys(destroy):
            try:
                record = self._find(key)
                if not record.may_delete:
                    raise SetError("forbidden", "the user's own address is always an identity")
                await erase(self.env, record.id)
                self.done = True
            except SetError as error:
                failed[key] = error
                continue
            del self.stored[record.id], self.every[record.id]
            done.append(record.id)
        return done, failed

    def _find(self, key: str) -> IdentityRecord:
        """The identity ``key`` names: an id, or ``#creationId`` of one created earlier in the
        request (RFC 8620 5.3)."""
        identity_id = self.ctx.created_ids.get(key[1:]) if key.startswith("#") else key
        record = self.every.get(identity_id or "")
        if record is None:
            raise SetError("notFound", f"no identity {key}")
        return record


def _check_names(
    props: Mapping[str, Any], *, allow_server_set: bool, current: Mapping[str, Any] | None = None
) -> None:
    """RFC 8620 5.3: unknown properties, and server-set ones with a new value, are invalid
    (a path into a property is not patched: Identity's properties are set whole)."""
    bad = [
        key
        for key, value in props.items()
        if key not in PROPERTIES
        or (
            key in PROPERTIES.server_set
            and not (allow_server_set and current is not None and current[key] == value)
        )
    ]
    if bad:
        raise SetError.invalid_properties(bad, "unknown or server-set properties")


def _values(props: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    try:
        return identity_values(props, creating=creating)
    except InvalidIdentity as exc:
        raise SetError.invalid_properties([exc.prop], exc.description) from None
