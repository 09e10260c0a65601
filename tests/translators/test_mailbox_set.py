"""Mailbox/set against a real Dovecot: create, rename, re-parent, subscribe, destroy, errors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.witness import Witness, mutf7


async def set_(jmap: Jmap, **args: Any) -> dict[str, Any]:
    return await jmap.call("Mailbox/set", **args)


async def test_create_with_child_by_reference(jmap: Jmap, dovecot: Dovecot) -> None:
    result = await set_(
        jmap,
        create={
            "child": {"name": "子フォルダ", "parentId": "#parent"},
            "parent": {"name": "Пример 📬"},
        },
    )
    assert result["notCreated"] is None
    parent, child = result["created"]["parent"], result["created"]["child"]
    assert parent["parentId"] is None and parent["isSubscribed"] is True
    assert "name" not in parent  # the client sent it
    assert child["totalEmails"] == 0 and child["myRights"]["mayAddItems"] is True
    mailboxes = await jmap.mailboxes()
    assert mailboxes["Пример 📬"]["id"] == parent["id"]
    assert mailboxes["Пример 📬/子フォルダ"]["id"] == child["id"]
    raw = mutf7("Пример 📬")
    with Witness(dovecot, jmap.username) as witness:
        assert {raw, f"{raw}/{mutf7('子フォルダ')}"} <= witness.names()
        assert raw in witness.subscribed()
    assert result["oldState"] != result["newState"]


async def test_created_ids_usable_later_in_the_request(jmap: Jmap) -> None:
    created, renamed = await jmap.request(
        ("Mailbox/set", {"create": {"k1": {"name": "First"}}}),
        ("Mailbox/set", {"update": {"#k1": {"name": "Second"}}}),
    )
    new_id = created[1]["created"]["k1"]["id"]
    assert renamed[1]["updated"] == {new_id: None}
    assert (await jmap.mailboxes())["Second"]["id"] == new_id


async def test_rename_and_reparent_keep_the_id(jmap: Jmap, dovecot: Dovecot) -> None:
    ids = (
        await set_(
            jmap,
            create={
                "a": {"name": "Projects"},
                "b": {"name": "Clients"},
                "c": {"name": "Acme", "parentId": "#a"},
            },
        )
    )["created"]
    acme, clients = ids["c"]["id"], ids["b"]["id"]
    result = await set_(jmap, update={acme: {"name": "Acme Corp", "parentId": clients}})
    assert result["updated"] == {acme: None}
    mailboxes = await jmap.mailboxes()
    assert mailboxes["Clients/Acme Corp"]["id"] == acme
    with Witness(dovecot, jmap.username) as witness:
        names = witness.names()
        assert "Clients/Acme Corp" in names and "Projects/Acme" not in names
        assert "Clients/Acme Corp" in witness.subscribed()
    changes = await jmap.call("Mailbox/changes", sinceState=result["oldState"])
    assert changes["updated"] == [acme] and changes["updatedProperties"] is None


async def test_subscribe_and_sort_order(jmap: Jmap, dovecot: Dovecot) -> None:
    box = (
        await set_(jmap, create={"k": {"name": "Quiet", "isSubscribed": False, "sortOrder": 7}})
    )["created"]["k"]
    assert "isSubscribed" not in box and "sortOrder" not in box  # both sent by the client
    with Witness(dovecot, jmap.username) as witness:
        assert "Quiet" not in witness.subscribed()
    await set_(jmap, update={box["id"]: {"isSubscribed": True, "sortOrder": 3}})
    quiet = (await jmap.mailboxes())["Quiet"]
    assert quiet["isSubscribed"] is True and quiet["sortOrder"] == 3
    with Witness(dovecot, jmap.username) as witness:
        assert "Quiet" in witness.subscribed()


async def test_destroy(jmap: Jmap, dovecot: Dovecot) -> None:
    ids = (
        await set_(jmap, create={"p": {"name": "Parent"}, "c": {"name": "Kid", "parentId": "#p"}})
    )["created"]
    result = await set_(jmap, destroy=[ids["p"]["id"], ids["c"]["id"]])
    assert sorted(result["destroyed"]) == sorted([ids["p"]["id"], ids["c"]["id"]])
    with Witness(dovecot, jmap.username) as witness:
        assert not {"Parent", "Parent/Kid"} & witness.names()
    changes = await jmap.call("Mailbox/changes", sinceState=result["oldState"])
    assert sorted(changes["destroyed"]) == sorted(result["destroyed"])


async def test_mailbox_with_email(jmap: Jmap, dovecot: Dovecot) -> None:
    with Witness(dovecot, jmap.username) as witness:
        witness.create("Full")
        witness.append("Full", "keep me")
    full = (await jmap.mailboxes())["Full"]["id"]
    refused = await set_(jmap, destroy=[full])
    assert refused["notDestroyed"][full]["type"] == "mailboxHasEmail"
    with Witness(dovecot, jmap.username) as witness:
        assert witness.status("Full")["MESSAGES"] == 1
    done = await set_(jmap, destroy=[full], onDestroyRemoveEmails=True)
    assert done["destroyed"] == [full]


async def test_mailbox_with_child(jmap: Jmap) -> None:
    ids = (await set_(jmap, create={"p": {"name": "P"}, "c": {"name": "C", "parentId": "#p"}}))[
        "created"
    ]
    result = await set_(jmap, destroy=[ids["p"]["id"]])
    assert result["notDestroyed"][ids["p"]["id"]]["type"] == "mailboxHasChild"


@pytest.mark.parametrize(
    ("props", "bad"),
    [
        ({"name": "a/b"}, ["name"]),
        ({"name": ""}, ["name"]),
        ({"name": "   "}, ["name"]),
        ({"name": "x" * 300}, ["name"]),
        ({"name": 5}, ["name"]),
        ({"name": "x", "parentId": "nosuchmailbox"}, ["parentId"]),
        ({"name": "x", "role": "sent"}, ["role"]),
        ({"name": "x", "role": "nonsense"}, ["role"]),
        ({"name": "x", "totalEmails": 5}, ["totalEmails"]),
        ({"name": "x", "colour": "red"}, ["colour"]),
        ({"name": "x", "sortOrder": -1}, ["sortOrder"]),
    ],
)
async def test_invalid_creates(jmap: Jmap, props: dict[str, Any], bad: list[str]) -> None:
    result = await set_(jmap, create={"k": props})
    error = result["notCreated"]["k"]
    assert error["type"] == "invalidProperties" and error["properties"] == bad
    assert result["created"] is None


async def test_invalid_updates(jmap: Jmap) -> None:
    mailboxes = await jmap.mailboxes()
    inbox, sent = mailboxes["Inbox"]["id"], mailboxes["Sent"]["id"]
    ids = (await set_(jmap, create={"a": {"name": "A"}, "b": {"name": "B", "parentId": "#a"}}))[
        "created"
    ]
    a, b = ids["a"]["id"], ids["b"]["id"]
    result = await set_(
        jmap,
        update={
            inbox: {"name": "Renamed inbox"},
            sent: {"role": "trash"},
            a: {"parentId": b},
            b: {"name": "Sent", "parentId": None},
            "nosuch": {"name": "x"},
        },
    )
    errors = {key: value["type"] for key, value in result["notUpdated"].items()}
    assert errors == {
        inbox: "forbidden",
        sent: "invalidProperties",
        a: "invalidProperties",
        b: "alreadyExists",
        "nosuch": "notFound",
    }
    assert result["notUpdated"][a]["properties"] == ["parentId"]
    assert result["notUpdated"][b]["existingId"] == sent
    assert result["updated"] is None
    assert result["oldState"] == result["newState"]


async def test_invalid_destroys(jmap: Jmap) -> None:
    inbox = (await jmap.mailboxes())["Inbox"]["id"]
    result = await set_(jmap, destroy=[inbox, "nosuch"])
    assert result["notDestroyed"][inbox]["type"] == "forbidden"
    assert result["notDestroyed"]["nosuch"]["type"] == "notFound"


async def test_if_in_state(jmap: Jmap) -> None:
    state = (await jmap.call("Mailbox/get", ids=[]))["state"]
    (stale,) = await jmap.request(
        ("Mailbox/set", {"ifInState": state + "0", "create": {"k": {"name": "X"}}})
    )
    assert stale[0] == "error" and stale[1]["type"] == "stateMismatch"
    ok = await set_(jmap, ifInState=state, create={"k": {"name": "X"}})
    assert ok["oldState"] == state and ok["created"]["k"]["id"]


async def test_rename_parent_then_child_in_one_call(jmap: Jmap, dovecot: Dovecot) -> None:
    ids = (await set_(jmap, create={"p": {"name": "Top"}, "c": {"name": "Low", "parentId": "#p"}}))[
        "created"
    ]
    top, low = ids["p"]["id"], ids["c"]["id"]
    result = await set_(jmap, update={top: {"name": "Top2"}, low: {"name": "Low2"}}, destroy=[])
    assert result["updated"] == {top: None, low: None}
    boxes = await jmap.mailboxes()
    assert boxes["Top2"]["id"] == top and boxes["Top2/Low2"]["id"] == low
    with Witness(dovecot, jmap.username) as witness:
        assert {"Top2", "Top2/Low2"} <= witness.names()


async def test_rename_moves_the_subscriptions_below(jmap: Jmap, dovecot: Dovecot) -> None:
    ids = (await set_(jmap, create={"p": {"name": "P"}, "c": {"name": "C", "parentId": "#p"}}))[
        "created"
    ]
    await set_(jmap, update={ids["p"]["id"]: {"name": "Q"}})
    with Witness(dovecot, jmap.username) as witness:
        subscribed = witness.subscribed()
    assert {"Q", "Q/C"} <= subscribed and not {"P", "P/C"} & subscribed
    assert (await jmap.mailboxes())["Q/C"]["isSubscribed"] is True


async def test_sort_order_alone_moves_the_state(jmap: Jmap) -> None:
    inbox = (await jmap.mailboxes())["Inbox"]["id"]
    result = await set_(jmap, update={inbox: {"sortOrder": 42}})
    assert result["newState"] != result["oldState"]
    again = await set_(jmap, ifInState=result["newState"], update={inbox: {"sortOrder": 43}})
    assert again["updated"] == {inbox: None}
    changes = await jmap.call("Mailbox/changes", sinceState=result["oldState"])
    assert changes["updated"] == [inbox]
