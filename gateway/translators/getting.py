"""Foo/get (RFC 8620 5.1) run once for every data type, with the type's records.

A type says how to read its records and how to render them; this runs the rest: ids null
means every id (bounded by maxObjectsInGet where the type counts its records), the records
of all the ids asked come from one batched read, and the objects answered follow the order
the ids were asked in, each once, with notFound filled (gateway.jmap.getting). The
properties were checked against the type's table (gateway.jmap.properties) before; they
arrive with ``id`` first.

The read happens inside the type's ``reader()`` context (for Email: while it holds an
upstream connection); rendering happens after it is closed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext
from gateway.jmap.getting import check_all, found_ids, get_response, not_found
from gateway.jmap.properties import PropertyTable
from gateway.jmap.standard import GetArgs, parse_get

R = TypeVar("R")


@dataclass(frozen=True)
class Batch(Generic[R]):
    """The records found among the ids asked (absent ids are simply missing) and the
    type's state, read together so they agree."""

    state: str
    records: Mapping[str, R]


class GetReader(Protocol[R]):
    """A type's records, open for the length of one /get's reads."""

    async def count(self) -> int | None:
        """How many records "all" is; None when a /get may always return all of them."""
        ...

    async def all_ids(self) -> list[str]: ...

    async def records(self, ids: list[str]) -> Batch[R]:
        """The records of ``ids`` (which may repeat), in one batched read."""
        ...


class GetType(Protocol[R]):
    # What "all ids" is too many of, in the requestTooLarge description ("emails").
    noun: str

    def reader(self) -> AbstractAsyncContextManager[GetReader[R]]: ...

    async def render(self, records: list[R], properties: list[str]) -> list[dict[str, Any]]:
        """The objects of ``records`` (in order) with exactly ``properties``."""
        ...


async def run_get(
    args: GetArgs, properties: list[str], kind: GetType[R], max_objects: int
) -> dict[str, Any]:
    async with kind.reader() as reader:
        ids = args.ids
        if ids is None:
            count = await reader.count()
            if count is not None:
                check_all(count, max_objects, kind.noun)
            ids = await reader.all_ids()
        batch = await reader.records(ids)
    found = [batch.records[i] for i in found_ids(ids, batch.records)]
    objects = await kind.render(found, properties)
    return get_response(args.account_id, batch.state, objects, not_found(args.ids, batch.records))


async def standard_get(
    ctx: CallContext[RequestEnv],
    arguments: dict[str, Any],
    table: PropertyTable[Any],
    kind: GetType[R],
) -> dict[str, Any]:
    """The whole Foo/get of a type whose /get takes only RFC 8620 5.1's arguments (Mailbox,
    Thread, and the coming Identity, EmailSubmission, VacationResponse): the type gives its
    table and how to read and render its records."""
    max_objects = ctx.env.services.limits.max_objects_in_get
    args = parse_get(arguments, max_objects)
    return await run_get(args, table.select(args.properties), kind, max_objects)


def project(objects: Sequence[Mapping[str, Any]], properties: list[str]) -> list[dict[str, Any]]:
    """Objects already whole (as Mailbox's are), cut to ``properties``."""
    return [{p: obj[p] for p in properties} for obj in objects]
