"""Mailbox/query and Mailbox/queryChanges through the gateway, on a real Dovecot."""

from __future__ import annotations

from typing import Any

from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.witness import Witness


async def query(jmap: Jmap, **args: Any) -> dict[str, Any]:
    return await jmap.call("Mailbox/query", **args)


async def tree(jmap: Jmap, dovecot: Dovecot) -> dict[str, dict[str, Any]]:
    with Witness(dovecot, jmap.username) as witness:
        for name in ("Work", "Work/Beta", "Work/Alpha", "Zoo", "Archive/2025"):
            witness.create(name)
    return await jmap.mailboxes()


async def test_filters(jmap: Jmap, dovecot: Dovecot) -> None:
    boxes = await tree(jmap, dovecot)
    work = boxes["Work"]["id"]
    children = await query(jmap, filter={"parentId": work}, sort=[{"property": "name"}])
    assert children["ids"] == [boxes["Work/Alpha"]["id"], boxes["Work/Beta"]["id"]]
    roles = await query(jmap, filter={"hasAnyRole": True}, calculateTotal=True)
    assert roles["total"] == 6
    assert set(roles["ids"]) == {m["id"] for m in boxes.values() if m["role"]}
    sent = await query(jmap, filter={"role": "sent"})
    assert sent["ids"] == [boxes["Sent"]["id"]]
    named = await query(
        jmap,
        filter={
            "operator": "AND",
            "conditions": [
                {"name": "a"},
                {"operator": "NOT", "conditions": [{"hasAnyRole": True}]},
            ],
        },
        sort=[{"property": "name"}],
    )
    assert named["ids"] == [boxes["Work/Alpha"]["id"], boxes["Work/Beta"]["id"]]
    subscribed = await query(jmap, filter={"isSubscribed": False}, calculateTotal=True)
    assert boxes["Zoo"]["id"] in subscribed["ids"]
    assert boxes["Sent"]["id"] not in subscribed["ids"]


async def test_sort_as_tree_and_windows(jmap: Jmap, dovecot: Dovecot) -> None:
    boxes = await tree(jmap, dovecot)
    full = await query(jmap, sort=[{"property": "name"}], sortAsTree=True, calculateTotal=True)
    names = {m["id"]: path for path, m in boxes.items()}
    order = [names[i] for i in full["ids"]]
    assert order.index("Work") < order.index("Work/Alpha") < order.index("Work/Beta")
    assert order.index("Work/Beta") < order.index("Zoo")
    assert order.index("Archive") < order.index("Archive/2025") < order.index("Drafts")
    assert full["total"] == len(boxes) and full["position"] == 0
    page = await query(jmap, sort=[{"property": "name"}], sortAsTree=True, position=-3, limit=2)
    assert page["ids"] == full["ids"][-3:-1]
    anchored = await query(
        jmap,
        sort=[{"property": "name"}],
        sortAsTree=True,
        anchor=boxes["Work"]["id"],
        anchorOffset=1,
        limit=1,
    )
    assert anchored["ids"] == [boxes["Work/Alpha"]["id"]]
    assert anchored["queryState"] and anchored["canCalculateChanges"] is True


async def test_query_errors(jmap: Jmap) -> None:
    responses = await jmap.request(
        ("Mailbox/query", {"filter": {"colour": "red"}}),
        ("Mailbox/query", {"sort": [{"property": "totalEmails"}]}),
        ("Mailbox/query", {"anchor": "nosuch"}),
        ("Mailbox/query", {"sortAsTree": "yes"}),
        ("Mailbox/query", {"filter": {"operator": ["AND"], "conditions": []}}),
    )
    assert [r[1]["type"] for r in responses] == [
        "unsupportedFilter",
        "unsupportedSort",
        "anchorNotFound",
        "invalidArguments",
        "invalidArguments",
    ]


async def test_query_changes_after_other_clients(jmap: Jmap, dovecot: Dovecot) -> None:
    boxes = await tree(jmap, dovecot)
    sort = [{"property": "name"}]
    before = await query(jmap, sort=sort)
    with Witness(dovecot, jmap.username) as witness:
        witness.create("Aardvark")
        witness.delete("Zoo")
    after = await query(jmap, sort=sort)
    changes = await jmap.call(
        "Mailbox/queryChanges", sinceQueryState=before["queryState"], sort=sort, calculateTotal=True
    )
    assert changes["newQueryState"] == after["queryState"]
    assert changes["total"] == len(after["ids"])
    # Applying the changes to the old list gives the new one (RFC 8620 5.6).
    ids = [i for i in before["ids"] if i not in set(changes["removed"])]
    for added in sorted(changes["added"], key=lambda a: a["index"]):
        ids.insert(added["index"], added["id"])
    assert ids == after["ids"]
    assert boxes["Zoo"]["id"] in changes["removed"]


async def test_query_changes_errors(jmap: Jmap, dovecot: Dovecot) -> None:
    before = await query(jmap)
    with Witness(dovecot, jmap.username) as witness:
        for i in range(3):
            witness.create(f"N{i}")
    responses = await jmap.request(
        ("Mailbox/queryChanges", {"sinceQueryState": "bogus"}),
        ("Mailbox/queryChanges", {"sinceQueryState": before["queryState"], "maxChanges": 1}),
    )
    assert [r[1]["type"] for r in responses] == ["cannotCalculateChanges", "tooManyChanges"]
