"""PushSubscription/set (RFC 8620 7.2): a standard /set without accountId, ifInState or states.

Creates run first, then updates, then destroys (RFC 8620 5.3), each on its own: a refusal is
that subscription's SetError alone. A create stores the subscription with a fresh 128-bit
verification code and queues its PushVerification (the delivery worker sends it); nothing
else is pushed to the URL until an update echoes the code. The caller's login name is kept
for background watching (never a password).

The URL's host is resolved here (off the loop, bounded), so a refused destination is a clear
SetError at once; the delivery worker checks it again at every send, as a name may change.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from typing import Any

from gateway.cache.push_subscriptions import (
    PushSubscriptions,
    Subscription,
    TooManySubscriptions,
    UnknownSubscription,
    new_verification_code,
)
from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext
from gateway.jmap.errors import MethodError, SetError
from gateway.jmap.standard import (
    ArgReader,
    as_id_map,
    as_reference_list,
    as_reference_map,
    nullable,
)
from gateway.translators.push_subscription import values
from gateway.translators.push_subscription.properties import utc_date
from gateway.webpush.destinations import (
    DestinationPolicy,
    LookupBusy,
    RefusedDestination,
    resolve,
)

# What an update may change; the immutable ones only to the value they have (RFC 8620 5.3).
_MUTABLE = frozenset({"verificationCode", "expires", "types"})
_IMMUTABLE = frozenset({"id", "deviceClientId", "url", "keys"})
# RequestEnv.memo's key for the push URL lookups the request may still make.
_LOOKUPS = "push-url-lookups"


async def push_subscription_set(
    ctx: CallContext[RequestEnv], arguments: dict[str, Any]
) -> dict[str, Any]:
    # RFC 8620 7.2: no accountId, no ifInState.
    reader = ArgReader(arguments, {"create", "update", "destroy"})
    create = reader.optional("create", nullable(as_id_map), None) or {}
    update = reader.optional("update", nullable(as_reference_map), None) or {}
    destroy = reader.optional("destroy", nullable(as_reference_list), None) or []
    reader.finish()
    limit = ctx.env.services.limits.max_objects_in_set
    if len(create) + len(update) + len(destroy) > limit:
        raise MethodError("requestTooLarge", f"More than {limit} objects to change")
    run = _Run(ctx)
    await run.load()
    created, not_created = await run.create_all(create)
    updated, not_updated = await run.update_all(update)
    destroyed, not_destroyed = await run.destroy_all(destroy)
    # RFC 8620 7.2: no oldState or newState.
    return {
        "created": created or None,
        "notCreated": not_created or None,
        "updated": updated or None,
        "notUpdated": not_updated or None,
        "destroyed": destroyed or None,
        "notDestroyed": not_destroyed or None,
    }


class _Run:
    """One PushSubscription/set call over the caller's account's subscriptions."""

    def __init__(self, ctx: CallContext[RequestEnv]) -> None:
        self.ctx = ctx
        env = ctx.env
        self.settings = env.services.settings
        self.account_id = env.principal.account_id
        self.login = env.principal.username
        self.store = PushSubscriptions.of(env.services.store)
        self.policy = DestinationPolicy.from_settings(self.settings)
        self.records: dict[str, Subscription] = {}

    async def load(self) -> None:
        self.records = await self.store.get_all(self.account_id)

    async def create_all(
        self, create: Mapping[str, dict[str, Any]]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, SetError]]:
        done: dict[str, dict[str, Any]] = {}
        failed: dict[str, SetError] = {}
        for creation_id, props in create.items():
            try:
                subscription_id, shown = await self._create(props)
            except SetError as error:
                failed[creation_id] = error
                continue
            self.ctx.created_ids[creation_id] = subscription_id
            done[creation_id] = {"id": subscription_id, **shown}
        return done, failed

    async def _create(self, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        values.check_names(props, values.CREATE_NAMES)
        # RFC 8620 7.2: verificationCode "MUST be null (or omitted) when the subscription is
        # created".
        if props.get("verificationCode") is not None:
            raise SetError.invalid_properties(
                ["verificationCode"], "must be null when the subscription is created"
            )
        if "deviceClientId" not in props or "url" not in props:
            missing = sorted({"deviceClientId", "url"} - set(props))
            raise SetError.invalid_properties(missing, "required")
        device = values.device_client_id(props["deviceClientId"])
        url = values.url(props["url"], self.policy)
        keys = values.keys(props.get("keys"))
        types = values.types(props.get("types"))
        expiry = values.expires(props.get("expires"), self.settings.push_subscription_seconds)
        bound = self.settings.push_subscriptions_per_account
        if len(self.records) >= bound:
            raise _over_quota(bound)
        # URL lookups one REQUEST may make, whatever its calls: no more than the account may
        # hold (a request holds up to maxCallsInRequest calls; resolver.py bounds lookups in
        # flight per account and per process).
        memo = self.ctx.env.memo
        left = memo.get(_LOOKUPS, bound)
        if left <= 0:
            raise SetError("overQuota", f"at most {bound} push URLs are checked in one request")
        memo[_LOOKUPS] = left - 1
        try:
            await resolve(url, self.policy, self.account_id)
        except LookupBusy as busy:
            # RFC 8620 5.3: rateLimit "may work if tried again later".
            raise SetError("rateLimit", busy.reason) from None
        except RefusedDestination as refused:
            raise SetError.invalid_properties(["url"], refused.reason) from None
        record = Subscription(
            deviceClientId=device,
            url=url,
            keys=keys,
            # RFC 8620 7.2: "sufficient entropy to avoid the client being able to guess the
            # code via brute force": 128 bits from secrets.
            verificationCode=new_verification_code(),
            verified=False,
            expires=expiry.seconds,
            types=types,
            created=_now(),
        )
        try:
            subscription_id = await self.store.create(
                self.account_id, record, login=self.login, max_per_account=bound
            )
        except TooManySubscriptions:
            raise _over_quota(bound) from None
        self.records[subscription_id] = record
        # RFC 8620 5.3: the server-set and defaulted properties (7.2's example: keys, and an
        # expires the server chose).
        shown: dict[str, Any] = {}
        if "keys" not in props:
            shown["keys"] = None
        if "types" not in props:
            shown["types"] = None
        if expiry.changed:
            shown["expires"] = utc_date(expiry.seconds)
        return subscription_id, shown

    async def update_all(
        self, update: Mapping[str, dict[str, Any]]
    ) -> tuple[dict[str, dict[str, Any] | None], dict[str, SetError]]:
        done: dict[str, dict[str, Any] | None] = {}
        failed: dict[str, SetError] = {}
        for key, patch in update.items():
            try:
                subscription_id = self._find(key)
                done[subscription_id] = await self._update(subscription_id, patch)
            except SetError as error:
                failed[key] = error
        return done, failed

    async def _update(self, subscription_id: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        record = self.records[subscription_id]
        values.check_names(patch, _MUTABLE | _IMMUTABLE)
        current = {**record, "id": subscription_id}
        # RFC 8620 7.2: "The url and keys properties are immutable"; RFC 8620 5.3: an immutable
        # property may be "changed" to the value it has.
        changed = sorted(n for n in _IMMUTABLE & set(patch) if patch[n] != current[n])
        if changed:
            raise SetError.invalid_properties(changed, "cannot change once created")
        changes: dict[str, Any] = {}
        shown: dict[str, Any] = {}
        if "verificationCode" in patch:
            changes.update(_verify(record, patch["verificationCode"]))
        if "types" in patch:
            changes["types"] = values.types(patch["types"])
        if "expires" in patch:
            # RFC 8620 7.2: "The server MAY modify the proposed new expiry time to enforce
            # server-defined limits. Extending the lifetime does not require the subscription
            # to be verified again."
            expiry = values.expires(patch["expires"], self.settings.push_subscription_seconds)
            changes["expires"] = expiry.seconds
            if expiry.changed:
                shown["expires"] = utc_date(expiry.seconds)
        try:
            self.records[subscription_id] = await self.store.update(
                self.account_id, subscription_id, changes, login=self.login
            )
        except UnknownSubscription:
            del self.records[subscription_id]
            raise SetError("notFound", f"no push subscription {subscription_id}") from None
        return shown or None

    async def destroy_all(self, destroy: list[str]) -> tuple[list[str], dict[str, SetError]]:
        done: list[str] = []
        failed: dict[str, SetError] = {}
        for key in dict.fromkeys(destroy):
            try:
                subscription_id = self._find(key)
            except SetError as error:
                failed[key] = error
                continue
            # RFC 8620 7.2: "the server MUST securely erase the URL and encryption keys".
            await self.store.destroy(self.account_id, subscription_id)
            del self.records[subscription_id]
            done.append(subscription_id)
        return done, failed

    def _find(self, key: str) -> str:
        """The subscription ``key`` names in the caller's account: an id, or ``#creationId``
        of one created earlier in the request (RFC 8620 5.3)."""
        subscription_id = self.ctx.created_ids.get(key[1:]) if key.startswith("#") else key
        if subscription_id is None or subscription_id not in self.records:
            raise SetError("notFound", f"no push subscription {key}")
        return subscription_id


def _verify(record: Subscription, code: object) -> dict[str, Any]:
    """RFC 8620 7.2: "Attempts to update the subscription with an invalid verification code
    MUST be rejected by the server with an invalidProperties SetError"."""
    if not isinstance(code, str) or not hmac.compare_digest(
        code.encode(), record["verificationCode"].encode()
    ):
        raise SetError.invalid_properties(["verificationCode"], "not the code that was pushed")
    return {"verified": True}


def _over_quota(bound: int) -> SetError:
    return SetError("overQuota", f"an account keeps at most {bound} push subscriptions")


def _now() -> int:
    return int(time.time())
