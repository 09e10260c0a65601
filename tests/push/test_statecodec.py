"""pushState / Last-Event-ID tokens: what goes in comes out, and nothing else decodes."""

from __future__ import annotations

import base64

import orjson
import pytest

from gateway.push import PUSH_TYPES, Changed
from gateway.push.statecodec import MAX_TOKEN, decode, encode


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_round_trip_of_every_type() -> None:
    changed: Changed = {"a1": {t: f"0123456789-{i}" for i, t in enumerate(sorted(PUSH_TYPES))}}
    token = encode(changed)
    assert decode(token) == changed
    # Safe in a header, a URL and a JSON string without escaping.
    assert token.isascii() and all(c.isalnum() or c in "-_" for c in token)


def test_empty_and_several_accounts_round_trip() -> None:
    assert decode(encode({})) == {}
    two: Changed = {"a1": {"Email": "e-1"}, "a2": {"Mailbox": "e-2", "Thread": "e-3"}}
    assert decode(encode(two)) == two


def test_types_push_does_not_know_are_left_out() -> None:
    assert decode(encode({"a1": {"Email": "e-1", "Calendar": "x-1"}})) == {"a1": {"Email": "e-1"}}
    assert decode(b64(orjson.dumps({"a1": {"Email": "e-1", "Foo": "f-1"}}))) == {
        "a1": {"Email": "e-1"}
    }


def test_the_token_stays_within_its_bound() -> None:
    many: Changed = {
        f"account{n:03d}": {t: f"0123456789-{10**18 + n}" for t in PUSH_TYPES} for n in range(50)
    }
    token = encode(many)
    assert len(token) <= MAX_TOKEN
    kept = decode(token)
    assert kept is not None and 0 < len(kept) < len(many)
    # What is kept is exact; what is left out is absent (so the client is sent all of it).
    assert all(many[account] == states for account, states in kept.items())


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not base64 at all!",
        "%%%",
        b64(b"not json"),
        b64(orjson.dumps([1, 2])),
        b64(orjson.dumps({"a1": "Email"})),
        b64(orjson.dumps({"a1": {"Email": 5}})),
        b64(orjson.dumps({"a1": {"Email": ""}})),
        b64(orjson.dumps({"a1": {"Email": "x" * 200}})),
        b64(orjson.dumps({"": {"Email": "e-1"}})),
        "A" * (MAX_TOKEN + 4),
    ],
)
def test_garbage_decodes_to_none(token: str) -> None:
    assert decode(token) is None
