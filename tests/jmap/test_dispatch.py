"""Processing a request through the method table (RFC 8620 3.3-3.7, 4)."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from gateway.jmap.capabilities import CORE, MAIL
from gateway.jmap.core_methods import register_core
from gateway.jmap.dispatch import (
    AccountAccess,
    CallContext,
    Method,
    MethodRegistry,
    process_request,
)
from gateway.jmap.errors import MethodError
from gateway.jmap.protocol import Invocation, JsonObject, Request
from gateway.jmap.standard import as_bool

CONTACTS = "urn:ietf:params:jmap:contacts"

ACCOUNTS = {
    "A1": AccountAccess("A1", frozenset({MAIL}), read_only=False),
    "RO": AccountAccess("RO", frozenset({MAIL}), read_only=True),
    "C1": AccountAccess("C1", frozenset({CONTACTS}), read_only=False),
}


@dataclass
class Env:
    log: list[str] = field(default_factory=list)


registry: MethodRegistry[Env] = MethodRegistry()
register_core(registry)


@registry.method("Test/record", MAIL)
async def record(ctx: CallContext[Env], args: JsonObject) -> JsonObject:
    ctx.env.log.append(ctx.call_id)
    return {"seen": len(ctx.env.log)}


@registry.method("Test/fail", MAIL)
async def fail(ctx: CallContext[Env], args: JsonObject) -> JsonObject:
    raise MethodError("forbidden", "not for you")


@registry.method("Test/crash", MAIL, account_arg=None)
async def crash(ctx: CallContext[Env], args: JsonObject) -> JsonObject:
    raise RuntimeError("password=hunter2 leaked in exception text")


@registry.method("Test/write", MAIL, writes=True)
async def write(ctx: CallContext[Env], args: JsonObject) -> JsonObject:
    return {"written": True}


@registry.method("Test/create", MAIL, writes=True)
async def create(ctx: CallContext[Env], args: JsonObject) -> JsonObject:
    # A creation id seen earlier in the request resolves through the shared map.
    parent = ctx.created_ids.get(args.get("parent", ""))
    ctx.created_ids[args["creationId"]] = args["id"]
    return {"created": args["id"], "parent": parent}


@registry.method("Test/multi", MAIL)
async def multi(ctx: CallContext[Env], args: JsonObject) -> list[Invocation]:
    return [Invocation("Test/multi", {"part": 1}, "ignored"), Invocation("Test/set", {}, "x")]


@registry.method("Test/none", MAIL, account_arg=None)
async def none(ctx: CallContext[Env], args: JsonObject) -> list[Invocation]:
    return []


@registry.method("Test/context", CONTACTS)
async def context(ctx: CallContext[Env], args: JsonObject) -> JsonObject:
    return {
        "method": ctx.method,
        "callId": ctx.call_id,
        "using": sorted(ctx.using),
        "account": ctx.account.account_id if ctx.account else None,
        "accounts": sorted(ctx.accounts),
    }


@registry.method("Core/accountScoped", CORE)
async def core_scoped(ctx: CallContext[Env], args: JsonObject) -> JsonObject:
    return {"ok": True}


async def run(
    *calls: list[Any],
    using: tuple[str, ...] = (CORE, MAIL),
    created_ids: dict[str, str] | None = None,
    env: Env | None = None,
) -> JsonObject:
    request = Request(
        using=frozenset(using),
        method_calls=[Invocation(name, args, call_id) for name, args, call_id in calls],
        created_ids=created_ids,
    )
    result = await process_request(request, registry, ACCOUNTS, env or Env(), "state-1")
    # Method responses come encoded (orjson fragments); read them back as a client would.
    return orjson.loads(orjson.dumps(result))  # type: ignore[no-any-return]


def responses(result: JsonObject) -> list[Any]:
    return [list(item) for item in result["methodResponses"]]


async def test_core_echo_rfc_example() -> None:
    result = await run(["Core/echo", {"hello": True, "high": 5}, "b3ff"], using=(CORE,))
    assert result == {
        "methodResponses": [["Core/echo", {"hello": True, "high": 5}, "b3ff"]],
        "sessionState": "state-1",
    }


async def test_calls_run_in_order() -> None:
    env = Env()
    result = await run(
        ["Test/record", {"accountId": "A1"}, "c1"],
        ["Test/record", {"accountId": "A1"}, "c2"],
        ["Test/record", {"accountId": "A1"}, "c3"],
        env=env,
    )
    assert env.log == ["c1", "c2", "c3"]
    assert responses(result) == [
        ["Test/record", {"seen": 1}, "c1"],
        ["Test/record", {"seen": 2}, "c2"],
        ["Test/record", {"seen": 3}, "c3"],
    ]


async def test_unknown_method() -> None:
    result = await run(["Nope/get", {}, "c1"])
    assert responses(result) == [
        ["error", {"type": "unknownMethod", "description": "Unknown method 'Nope/get'"}, "c1"]
    ]


async def test_method_of_capability_not_in_using_is_unknown() -> None:
    result = await run(["Test/record", {"accountId": "A1"}, "c1"], using=(CORE,))
    description = f"Test/record needs {MAIL!r} in using"
    assert responses(result) == [
        ["error", {"type": "unknownMethod", "description": description}, "c1"]
    ]


async def test_error_in_the_middle_leaves_the_rest_running() -> None:
    env = Env()
    result = await run(
        ["Test/record", {"accountId": "A1"}, "c1"],
        ["Test/fail", {"accountId": "A1"}, "c2"],
        ["Test/record", {"accountId": "A1"}, "c3"],
        env=env,
    )
    assert responses(result) == [
        ["Test/record", {"seen": 1}, "c1"],
        ["error", {"type": "forbidden", "description": "not for you"}, "c2"],
        ["Test/record", {"seen": 2}, "c3"],
    ]


async def test_server_fail_hides_exception_text(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="gateway.jmap.dispatch"):
        result = await run(["Test/crash", {}, "c1"], ["Core/echo", {"x": 1}, "c2"])
    (error, echo) = responses(result)
    assert echo == ["Core/echo", {"x": 1}, "c2"]
    assert error[0] == "error"
    assert error[2] == "c1"
    assert set(error[1]) == {"type", "description"}
    assert error[1]["type"] == "serverFail"
    match = re.fullmatch(r"Internal error; incident ([0-9a-f]{12})", error[1]["description"])
    assert match is not None
    assert "hunter2" not in str(result)
    (log_record,) = caplog.records
    assert match.group(1) in log_record.getMessage()
    assert log_record.exc_info is not None
    assert "hunter2" in str(log_record.exc_info[1])


async def test_handler_returning_no_response_is_server_fail() -> None:
    result = await run(["Test/none", {}, "c1"])
    assert responses(result)[0][1]["type"] == "serverFail"


async def test_all_responses_of_a_call_share_its_id() -> None:
    result = await run(["Test/multi", {"accountId": "A1"}, "c7"])
    assert responses(result) == [["Test/multi", {"part": 1}, "c7"], ["Test/set", {}, "c7"]]


async def test_created_ids_round_trip() -> None:
    result = await run(
        ["Test/create", {"accountId": "A1", "creationId": "k1", "id": "M1", "parent": "k0"}, "c1"],
        ["Test/create", {"accountId": "A1", "creationId": "k2", "id": "M2", "parent": "k1"}, "c2"],
        created_ids={"k0": "M0"},
    )
    assert responses(result) == [
        ["Test/create", {"created": "M1", "parent": "M0"}, "c1"],
        ["Test/create", {"created": "M2", "parent": "M1"}, "c2"],
    ]
    assert result["createdIds"] == {"k0": "M0", "k1": "M1", "k2": "M2"}


async def test_empty_created_ids_is_returned() -> None:
    result = await run(["Core/echo", {}, "c1"], created_ids={})
    assert result["createdIds"] == {}


async def test_created_ids_absent_when_not_given() -> None:
    result = await run(["Test/create", {"accountId": "A1", "creationId": "k1", "id": "M1"}, "c1"])
    assert responses(result) == [["Test/create", {"created": "M1", "parent": None}, "c1"]]
    assert set(result) == {"methodResponses", "sessionState"}


async def test_request_created_ids_are_not_mutated() -> None:
    given = {"k0": "M0"}
    await run(
        ["Test/create", {"accountId": "A1", "creationId": "k1", "id": "M1"}, "c1"],
        created_ids=given,
    )
    assert given == {"k0": "M0"}


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            ["Test/record", {}, "c1"],
            {
                "type": "invalidArguments",
                "description": "accountId: must be a String",
                "arguments": ["accountId"],
            },
        ),
        (
            ["Test/record", {"accountId": 5}, "c1"],
            {
                "type": "invalidArguments",
                "description": "accountId: must be a String",
                "arguments": ["accountId"],
            },
        ),
        (
            ["Test/record", {"accountId": "Z9"}, "c1"],
            {"type": "accountNotFound", "description": "No account 'Z9'"},
        ),
        (
            ["Test/record", {"accountId": "C1"}, "c1"],
            {
                "type": "accountNotSupportedByMethod",
                "description": "Test/record is not available in account 'C1'",
            },
        ),
        (
            ["Test/write", {"accountId": "RO"}, "c1"],
            {"type": "accountReadOnly", "description": "Account 'RO' is read-only"},
        ),
    ],
)
async def test_account_checks(call: list[Any], expected: JsonObject) -> None:
    result = await run(call)
    assert responses(result) == [["error", expected, "c1"]]


async def test_read_only_account_allows_reads() -> None:
    result = await run(["Test/record", {"accountId": "RO"}, "c1"])
    assert responses(result) == [["Test/record", {"seen": 1}, "c1"]]


async def test_core_methods_need_no_account_capability() -> None:
    result = await run(["Core/accountScoped", {"accountId": "C1"}, "c1"], using=(CORE,))
    assert responses(result) == [["Core/accountScoped", {"ok": True}, "c1"]]


async def test_context_describes_the_call() -> None:
    result = await run(["Test/context", {"accountId": "C1"}, "c9"], using=(CORE, CONTACTS))
    assert responses(result) == [
        [
            "Test/context",
            {
                "method": "Test/context",
                "callId": "c9",
                "using": sorted([CORE, CONTACTS]),
                "account": "C1",
                "accounts": ["A1", "C1", "RO"],
            },
            "c9",
        ]
    ]


async def test_references_resolve_before_the_account_check() -> None:
    result = await run(
        ["Core/echo", {"account": "A1"}, "c1"],
        [
            "Test/record",
            {"#accountId": {"resultOf": "c1", "name": "Core/echo", "path": "/account"}},
            "c2",
        ],
    )
    assert responses(result)[1] == ["Test/record", {"seen": 1}, "c2"]


async def test_reference_to_failed_call_is_invalid_result_reference() -> None:
    result = await run(
        ["Nope/get", {}, "c1"],
        ["Core/echo", {"#ids": {"resultOf": "c1", "name": "Nope/get", "path": "/ids"}}, "c2"],
    )
    assert responses(result)[1] == [
        "error",
        {
            "type": "invalidResultReference",
            "description": "#ids: the response to 'c1' is 'error', not 'Nope/get'",
        },
        "c2",
    ]


async def test_references_see_earlier_responses_only() -> None:
    result = await run(
        ["Core/echo", {"#x": {"resultOf": "c2", "name": "Core/echo", "path": "/y"}}, "c1"],
        ["Core/echo", {"y": 1}, "c2"],
    )
    assert responses(result)[0][1]["type"] == "invalidResultReference"


def test_registry_rejects_duplicate_names() -> None:
    local: MethodRegistry[Env] = MethodRegistry()
    register_core(local)
    with pytest.raises(ValueError, match="Core/echo"):
        register_core(local)


def test_registry_lookup_and_capabilities() -> None:
    local: MethodRegistry[Env] = MethodRegistry()
    register_core(local)
    local.add(Method("Test/write", MAIL, write, writes=True))
    method = local.get("Test/write")
    assert method == Method("Test/write", MAIL, write, writes=True, account_arg="accountId")
    assert local.get("Test/missing") is None
    assert local.capabilities() == frozenset({CORE, MAIL})


def test_decorator_registers_the_row() -> None:
    assert registry.get("Test/write") == Method("Test/write", MAIL, write, True, "accountId")
    assert registry.get("Test/crash") == Method("Test/crash", MAIL, crash, False, None)


@registry.method("Test/convert", MAIL, account_arg=None)
async def convert(ctx: CallContext[Env], args: JsonObject) -> JsonObject:
    # A converter used outside ArgReader: its refusal must still be the client's error.
    return {"flag": as_bool(args.get("flag"))}


@registry.method("Test/unencodable", MAIL, account_arg=None)
async def unencodable(ctx: CallContext[Env], args: JsonObject) -> JsonObject:
    return {"set": {1, 2}}


@registry.method("Test/tick", MAIL, account_arg=None)
async def tick(ctx: CallContext[Env], args: JsonObject) -> JsonObject:
    return {"ticks": len(ctx.env.log)}


async def test_a_stray_invalid_value_is_invalid_arguments() -> None:
    (answer,) = responses(await run(["Test/convert", {"flag": "yes"}, "c1"]))
    assert answer == [
        "error",
        {"type": "invalidArguments", "description": "must be a Boolean"},
        "c1",
    ]


async def test_a_response_json_cannot_hold_is_server_fail_alone() -> None:
    failed, echoed = responses(
        await run(["Test/unencodable", {}, "c1"], ["Core/echo", {"ok": 1}, "c2"])
    )
    assert failed[1]["type"] == "serverFail"
    assert echoed == ["Core/echo", {"ok": 1}, "c2"]


async def test_other_tasks_run_between_the_calls_of_a_request() -> None:
    """Calls that never wait (Core/echo) still give the loop a turn between them."""
    env = Env()

    async def ticker() -> None:
        while True:
            env.log.append("tick")
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        calls = [["Test/tick", {}, f"c{n}"] for n in range(5)]
        seen = [answer[1]["ticks"] for answer in responses(await run(*calls, env=env))]
    finally:
        task.cancel()
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


@registry.method("Test/bigList", MAIL, account_arg=None)
async def big_list(ctx: CallContext[Env], args: JsonObject) -> JsonObject:
    ctx.env.log.append("returned")
    return {"list": [{"id": str(n), "value": "x" * 1_000_000} for n in range(8)]}


async def test_other_tasks_run_while_a_large_list_is_encoded() -> None:
    """8 MB of /get objects are encoded object by object, with the loop's turn between them:
    encoding is one call into C, tens of milliseconds for megabytes."""
    env = Env()
    ticks_after_return = 0

    async def ticker() -> None:
        nonlocal ticks_after_return
        while True:
            if "returned" in env.log:
                ticks_after_return += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        (answer,) = responses(await run(["Test/bigList", {}, "c1"], env=env))
    finally:
        task.cancel()
    assert [item["id"] for item in answer[1]["list"]] == [str(n) for n in range(8)]
    assert ticks_after_return >= 4
