"""pushState (RFC 8887 4.3.5.2) and the EventSource event id (RFC 8620 7.3) are one token.

The token is what the client last saw, ``{accountId: {type: state}}``, as compact JSON in
base64url without padding: opaque to the client, safe in a header, a URL and a JSON string, and
read back without any server-side memory. A token this server did not make (or one mangled in
transit) decodes to None, and the caller then sends every current state: a client is never
left without a change, at worst it hears of one it knew.
"""

from __future__ import annotations

import base64
import binascii

import orjson

from gateway.push import PUSH_TYPES, Changed, TypeStates

# A token longer than this is not one of ours. One account's five states take about 200
# characters; the bound leaves room for a few accounts while keeping a header small.
MAX_TOKEN = 1024
# A state string is "<epoch>-<modseq>" (cache/changes.py): ten hex digits, a dash, at most 19
# digits; anything longer is not ours.
MAX_STATE = 40


def encode(changed: Changed) -> str:
    """The token of what the client has seen: only push's types, at most MAX_TOKEN characters.

    Accounts past the bound are left out, so the client is later told all of their states
    (decode yields nothing for them): safe, only more to send.
    """
    kept: Changed = {}
    token = _token(kept)
    for account_id in sorted(changed):
        states = {t: s for t, s in sorted(changed[account_id].items()) if t in PUSH_TYPES}
        candidate = _token({**kept, account_id: states})
        if len(candidate) > MAX_TOKEN:
            break
        kept[account_id] = states
        token = candidate
    return token


def decode(token: str) -> Changed | None:
    """What ``token`` says the client has seen, or None when it is not a token of ours.

    Types push does not know are dropped; a state that is not a short string, or any other
    shape, makes the whole token garbage.
    """
    if not token or len(token) > MAX_TOKEN:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(value, dict):
        return None
    changed: Changed = {}
    for account_id, states in value.items():
        parsed = _states(states)
        if not account_id or parsed is None:
            return None
        changed[account_id] = parsed
    return changed


def _states(value: object) -> TypeStates | None:
    if not isinstance(value, dict):
        return None
    states: TypeStates = {}
    for data_type, state in value.items():
        if not isinstance(state, str) or not state or len(state) > MAX_STATE:
            return None
        if data_type in PUSH_TYPES:
            states[data_type] = state
    return states


def _token(changed: Changed) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(changed)).decode().rstrip("=")
