"""Methods of the core capability that need no backend (RFC 8620 4)."""

from __future__ import annotations

from typing import Any

from gateway.jmap.capabilities import CORE
from gateway.jmap.dispatch import CallContext, Method, MethodRegistry
from gateway.jmap.protocol import JsonObject


async def echo(ctx: CallContext[Any], arguments: JsonObject) -> JsonObject:
    """RFC 8620 4: Core/echo returns exactly the arguments it is given."""
    return arguments


ECHO: Method[Any] = Method("Core/echo", CORE, echo, writes=False, account_arg=None)


def register_core(registry: MethodRegistry[Any]) -> None:
    """Add the core methods to the method table."""
    registry.add(ECHO)
