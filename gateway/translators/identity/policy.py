"""The operator's sender policy for one caller (GATEWAY_IDENTITY_ADDRESSES, gateway.senders)."""

from __future__ import annotations

import functools

from gateway.env import RequestEnv
from gateway.senders import SenderPolicy, own_address
from gateway.usernames import UsernameFormat


@functools.lru_cache(maxsize=8)
def _policy(patterns: str) -> SenderPolicy:
    return SenderPolicy.parse(patterns)


@functools.lru_cache(maxsize=8)
def _format(template: str) -> UsernameFormat:
    return UsernameFormat(template)


def user_address(env: RequestEnv) -> str | None:
    """The caller's own address: their login as the upstream spells it
    (GATEWAY_USERNAME_FORMAT) when that is an address, else that name at
    GATEWAY_MAIL_DOMAIN; None when neither makes one (then they have no default identity)."""
    settings = env.services.settings
    name = _format(settings.username_format).apply(env.principal.username.strip())
    return own_address(name, settings.mail_domain)


def may_send_from(env: RequestEnv, address: str) -> bool:
    """Whether the operator lets the caller send from ``address`` (RFC 8621 6.3 and 7.5
    ``forbiddenFrom``)."""
    policy = _policy(env.services.settings.identity_addresses)
    return policy.allows(address, user_address(env))
