"""maxSizeMailboxName is what the upstreams keep, and longer names are refused before asking.

Found by experiment (the first test keeps the fact checked): Dovecot's Maildir++ stores a
folder with all its parents in one directory name, so a full name in modified UTF-7 takes at
most 254 octets, and a RENAME that would lengthen a child past that fails whole. The gateway
advertised 255 UTF-8 octets, but non-ASCII names grow when encoded: 95 "é" (190 octets) were
refused. It now advertises the longest top-level name that fits whatever its characters
(RFC 8621 1.3.1, UTF-8 octets) and checks the encoded full name, children included.
"""

from __future__ import annotations

from typing import Any

from gateway.imap.mutf7 import encode
from tests.faultproxy import FaultProxy
from tests.jmapclient import MAIL, Jmap
from tests.servers import Dovecot
from tests.translators.proxied import jmap, proxy
from tests.translators.upstreams import Upstream, upstream
from tests.translators.witness import Witness, mutf7

__all__ = ["jmap", "proxy", "upstream"]  # fixtures

ADVERTISED = 109
# Lone two-octet characters between "&"s grow most when encoded ("&AOk-&-"): 109 octets of
# them take 254, one octet more 257.
WORST = "é&" * 36 + "&"
WORSE = "é&" * 36 + "é"


def refusal(result: dict[str, Any], key: str, kind: str = "notCreated") -> dict[str, Any]:
    errors = result[kind]
    assert errors is not None and key in errors, result
    return errors[key]  # type: ignore[no-any-return]


def test_the_worst_names_and_dovecots_limit(dovecot: Dovecot) -> None:
    assert len(WORST.encode()) == ADVERTISED and len(mutf7(WORST)) == 254
    assert len(WORSE.encode()) == ADVERTISED + 1 and len(mutf7(WORSE)) == 257
    assert encode(WORST) == mutf7(WORST)
    user = dovecot.fresh_user()
    imap = dovecot.client(user)
    try:
        assert imap.create("a" * 254)[0] == "OK"
        assert imap.create("b" * 255)[0] == "NO"
        assert imap.create(f'"{mutf7("é" * 95)}"')[0] == "NO"  # 190 octets of UTF-8
    finally:
        imap.logout()


async def test_advertised_names_of_any_characters_fit(upstream: Upstream) -> None:
    session = (await upstream.jmap.http.get("/jmap/session", auth=upstream.jmap.auth)).json()
    account = session["accounts"][upstream.jmap.account_id]
    assert account["accountCapabilities"][MAIL]["maxSizeMailboxName"] == ADVERTISED
    names = {
        "worst": WORST,
        "ascii": "a" * ADVERTISED,
        "amp": "&" * ADVERTISED,
        "latin": "é" * 54 + "a",
        "cjk": "日" * 36 + "a",
        "emoji": "📬" * 27 + "a",
    }
    assert all(len(name.encode()) == ADVERTISED for name in names.values())
    result = await upstream.jmap.call(
        "Mailbox/set", create={key: {"name": name} for key, name in names.items()}
    )
    assert result["notCreated"] is None and set(result["created"]) == set(names)
    with Witness(upstream.server, upstream.user) as witness:
        assert {mutf7(name) for name in names.values()} <= witness.names()
    listed = await upstream.jmap.mailboxes()
    assert all(listed[name]["id"] == result["created"][key]["id"] for key, name in names.items())


async def test_too_long_is_refused_before_asking(
    jmap: Jmap, proxy: FaultProxy, dovecot: Dovecot
) -> None:
    parent = (await jmap.call("Mailbox/set", create={"p": {"name": "p" * 100}}))["created"]
    parent_id = parent["p"]["id"]
    proxy.clear()
    result = await jmap.call(
        "Mailbox/set",
        create={
            "worse": {"name": WORSE},
            "ascii": {"name": "a" * 255},
            "fits": {"name": "b" * 254},
            "child": {"name": "c" * 154, "parentId": parent_id},
            "child-fits": {"name": "d" * 153, "parentId": parent_id},
        },
    )
    for key in ("worse", "ascii", "child"):
        error = refusal(result, key)
        assert error["type"] == "invalidProperties" and error["properties"] == ["name"]
    assert set(result["created"]) == {"fits", "child-fits"}
    creates = [c for c in proxy.commands() if c.split(b" ", 2)[1] == b"CREATE"]
    assert len(creates) == 2
    with Witness(dovecot, jmap.username) as witness:
        names = witness.names()
    assert "b" * 254 in names and f"{'p' * 100}/{'d' * 153}" in names
    assert not {"a" * 255, f"{'p' * 100}/{'c' * 154}"} & names


async def test_a_rename_that_would_lengthen_a_child_too_far(
    jmap: Jmap, proxy: FaultProxy, dovecot: Dovecot
) -> None:
    ids = (
        await jmap.call(
            "Mailbox/set",
            create={
                "top": {"name": "Top"},
                "child": {"name": "c" * 250, "parentId": "#top"},
                "other": {"name": "o" * 20},
            },
        )
    )["created"]
    top = ids["top"]["id"]
    proxy.clear()
    result = await jmap.call(
        "Mailbox/set",
        update={top: {"name": "Topp"}, ids["other"]["id"]: {"parentId": ids["child"]["id"]}},
    )
    assert refusal(result, top, "notUpdated")["properties"] == ["name"]
    moved = refusal(result, ids["other"]["id"], "notUpdated")
    assert moved["type"] == "invalidProperties" and moved["properties"] == ["parentId"]
    assert not [c for c in proxy.commands() if b" RENAME " in c]
    with Witness(dovecot, jmap.username) as witness:
        assert f"Top/{'c' * 250}" in witness.names()
    ok = await jmap.call("Mailbox/set", update={top: {"name": "Tip"}})
    assert ok["updated"] == {top: None}
