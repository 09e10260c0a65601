"""The one /get runner (gateway.translators.getting) with a type of its own: what it asks of
the type and in what order, apart from any server. The Email, Mailbox and Thread tests show
the same runner against Dovecot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from gateway.jmap.errors import MethodError
from gateway.jmap.standard import GetArgs
from gateway.translators.getting import Batch, run_get


class Widgets:
    """A type whose reader logs what it is asked, and whether it is still open."""

    noun = "widgets"

    def __init__(self, stored: dict[str, str], *, counted: bool = True) -> None:
        self.stored = stored
        self.counted = counted
        self.calls: list[Any] = []
        self.open = False

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Widgets]:
        self.open = True
        try:
            yield self
        finally:
            self.open = False

    async def count(self) -> int | None:
        self.calls.append("count")
        return len(self.stored) if self.counted else None

    async def all_ids(self) -> list[str]:
        self.calls.append("all_ids")
        return list(self.stored)

    async def records(self, ids: list[str]) -> Batch[tuple[str, str]]:
        assert self.open
        self.calls.append(("records", ids))
        return Batch("s7", {i: (i, self.stored[i]) for i in ids if i in self.stored})

    async def render(
        self, records: list[tuple[str, str]], properties: list[str]
    ) -> list[dict[str, Any]]:
        # Rendering is CPU work: the reader (an upstream connection) is given back first.
        assert not self.open
        self.calls.append(("render", properties))
        return [{p: i if p == "id" else colour for p in properties} for i, colour in records]


async def test_ids_in_the_order_asked_one_batched_read() -> None:
    widgets = Widgets({"a": "red", "b": "blue"})
    args = GetArgs("A", ["b", "x", "a", "b"], None)
    response = await run_get(args, ["id", "colour"], widgets, 10)
    assert response == {
        "accountId": "A",
        "state": "s7",
        "list": [{"id": "b", "colour": "blue"}, {"id": "a", "colour": "red"}],
        "notFound": ["x"],
    }
    assert widgets.calls == [("records", ["b", "x", "a", "b"]), ("render", ["id", "colour"])]


async def test_null_ids_is_every_record() -> None:
    widgets = Widgets({"a": "red", "b": "blue"})
    response = await run_get(GetArgs("A", None, None), ["id"], widgets, 2)
    assert response["list"] == [{"id": "a"}, {"id": "b"}]
    assert response["notFound"] == []
    assert widgets.calls[:2] == ["count", "all_ids"]


async def test_null_ids_past_max_objects_is_request_too_large() -> None:
    widgets = Widgets({"a": "red", "b": "blue", "c": "green"})
    with pytest.raises(MethodError) as caught:
        await run_get(GetArgs("A", None, None), ["id"], widgets, 2)
    assert caught.value.type == "requestTooLarge"
    assert caught.value.description == "The account has more than 2 widgets"
    assert widgets.calls == ["count"] and not widgets.open


async def test_a_type_that_does_not_count_returns_all() -> None:
    widgets = Widgets({"a": "red", "b": "blue", "c": "green"}, counted=False)
    response = await run_get(GetArgs("A", None, None), ["id"], widgets, 2)
    assert len(response["list"]) == 3
