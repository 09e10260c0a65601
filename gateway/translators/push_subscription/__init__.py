"""PushSubscription (RFC 8620 7.2): mobile clients register a Web Push URL.

The methods are core methods without accountId: a user's subscriptions belong to their one
account and no id reaches another's. Where the operator configured a VAPID key, the Session
also carries RFC 9749's capability with its public key. The state lives in
gateway.cache.push_subscriptions; the delivery worker (gateway.push.deliveries) sends.
"""

from __future__ import annotations

from gateway.env import RequestEnv
from gateway.jmap.capabilities import CORE, GATEWAY_PUSH, WEBPUSH_VAPID
from gateway.jmap.dispatch import Method
from gateway.translators.push_subscription.capability import (
    push_capability,
    vapid_capability,
    vapid_configured,
)
from gateway.translators.push_subscription.get import push_subscription_get
from gateway.translators.push_subscription.set import push_subscription_set
from gateway.translators.spec import Capability, Spec

# RFC 8620 7.2: neither takes an accountId.
METHODS: tuple[Method[RequestEnv], ...] = (
    Method("PushSubscription/get", CORE, push_subscription_get, writes=False, account_arg=None),
    Method("PushSubscription/set", CORE, push_subscription_set, writes=True, account_arg=None),
)

SPEC = Spec(CORE, METHODS)

VAPID_SPEC = Spec(
    WEBPUSH_VAPID,
    (),
    declares=Capability(WEBPUSH_VAPID, session=vapid_capability),
    offered=vapid_configured,
)

PUSH_SPEC = Spec(GATEWAY_PUSH, (), declares=Capability(GATEWAY_PUSH, session=push_capability))

SPECS = (SPEC, VAPID_SPEC, PUSH_SPEC)
