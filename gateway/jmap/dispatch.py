"""The method table and the request processor (RFC 8620 3.3-3.7).

Every method is one `Method` row in a `MethodRegistry`; `process_request` reads the
table, checks capability opt-in and account access, resolves result references, runs
the handler and turns every error into a response. Handlers only raise.

The app environment `env` is opaque here (generic `EnvT`), so this layer never learns
about IMAP, caches or HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from gateway.jmap.capabilities import CORE
from gateway.jmap.errors import MethodError
from gateway.jmap.protocol import Invocation, JsonObject, Request
from gateway.jmap.references import resolve_arguments

logger = logging.getLogger(__name__)

EnvT = TypeVar("EnvT")

HandlerResult = JsonObject | list[Invocation]
# Turns an exception from a lower layer (the upstream is down, Redis lost a state) into the
# method error it means; None leaves it an unexpected serverFail. Supplied by the app, so this
# layer never learns what those exceptions are.
ErrorMapper = Callable[[Exception], MethodError | None]
# Told of every call once it has its response: (method, outcome, seconds). The method is the
# registry's name or "unknown" and the outcome "ok" or the error type, so a metrics label built
# from them stays within the table, whatever names a client sends.
CallObserver = Callable[[str, str, float], None]
UNKNOWN_METHOD = "unknown"


@dataclass(frozen=True)
class AccountAccess:
    """What the caller may do with one account during this request."""

    account_id: str
    capabilities: frozenset[str]
    read_only: bool


@dataclass(frozen=True)
class CallContext(Generic[EnvT]):
    """Everything a handler may know about the call besides its arguments.

    `created_ids` is the one map of the whole request (RFC 8620 5.3): handlers add
    creation id -> record id to it and look "#creationId" references up in it.
    """

    method: str
    call_id: str
    using: frozenset[str]
    created_ids: dict[str, str]
    accounts: Mapping[str, AccountAccess]
    account: AccountAccess | None
    env: EnvT


Handler = Callable[[CallContext[EnvT], JsonObject], Awaitable[HandlerResult]]


@dataclass(frozen=True)
class Method(Generic[EnvT]):
    """One row of the method table.

    The handler returns the response arguments, or a list of Invocations when the call
    emits several responses (e.g. an implicit /set after /copy, RFC 8620 5.4); those
    are all stamped with the call's id. `account_arg` names the argument holding the
    account to check, or None for methods that take no account.
    """

    name: str
    capability: str
    handler: Handler[EnvT]
    writes: bool
    account_arg: str | None = "accountId"


class MethodRegistry(Generic[EnvT]):
    """The method table: name -> Method."""

    def __init__(self) -> None:
        self._methods: dict[str, Method[EnvT]] = {}

    def add(self, method: Method[EnvT]) -> None:
        """Register a method; a second row for one name is a programming error."""
        if method.name in self._methods:
            raise ValueError(f"method {method.name!r} is already registered")
        self._methods[method.name] = method

    def method(
        self,
        name: str,
        capability: str,
        *,
        writes: bool = False,
        account_arg: str | None = "accountId",
    ) -> Callable[[Handler[EnvT]], Handler[EnvT]]:
        """Decorator form of `add`, keeping the row next to its handler."""

        def register(handler: Handler[EnvT]) -> Handler[EnvT]:
            self.add(Method(name, capability, handler, writes, account_arg))
            return handler

        return register

    def get(self, name: str) -> Method[EnvT] | None:
        """Return the method called `name`, or None."""
        return self._methods.get(name)

    def capabilities(self) -> frozenset[str]:
        """The capabilities whose methods are registered, for the session object."""
        return frozenset(method.capability for method in self._methods.values())


@dataclass(frozen=True)
class _RequestState(Generic[EnvT]):
    """What every call of one request shares."""

    request: Request
    registry: MethodRegistry[EnvT]
    accounts: Mapping[str, AccountAccess]
    env: EnvT
    created_ids: dict[str, str]
    responses: list[Invocation]
    map_error: ErrorMapper | None


async def process_request(
    request: Request,
    registry: MethodRegistry[EnvT],
    accounts: Mapping[str, AccountAccess],
    env: EnvT,
    session_state: str,
    *,
    map_error: ErrorMapper | None = None,
    on_call: CallObserver | None = None,
) -> JsonObject:
    """Run the calls of a parsed request and return the Response object (RFC 8620 3.4)."""
    state = _RequestState(
        request, registry, accounts, env, dict(request.created_ids or {}), [], map_error
    )
    # RFC 8620 3.3: the method calls MUST be processed sequentially, in order.
    for call in request.method_calls:
        started = time.perf_counter()
        responses = await _process_call(call, state)
        if on_call is not None:
            on_call(*_outcome(call, responses, registry), time.perf_counter() - started)
        state.responses.extend(responses)
    response: JsonObject = {
        "methodResponses": [invocation.to_json() for invocation in state.responses],
        "sessionState": session_state,
    }
    # RFC 8620 3.4: createdIds is returned only if given, with every id added since.
    if request.created_ids is not None:
        response["createdIds"] = state.created_ids
    return response


async def _process_call(call: Invocation, state: _RequestState[EnvT]) -> list[Invocation]:
    """Run one call; RFC 8620 3.6.2: an error is a response and processing goes on."""
    try:
        return await _run_call(call, state)
    except MethodError as error:
        return [Invocation("error", error.to_arguments(), call.call_id)]
    except Exception as exc:
        mapped = state.map_error(exc) if state.map_error else None
        if mapped is not None:
            logger.warning("%s in %s: %s", mapped.type, call.name, type(exc).__name__)
            return [Invocation("error", mapped.to_arguments(), call.call_id)]
        incident = secrets.token_hex(6)
        logger.exception(
            "serverFail incident=%s method=%r callId=%r", incident, call.name, call.call_id
        )
        description = f"Internal error; incident {incident}"
        return [
            Invocation("error", {"type": "serverFail", "description": description}, call.call_id)
        ]


async def _run_call(call: Invocation, state: _RequestState[EnvT]) -> list[Invocation]:
    """Look the method up, check access, resolve references and run the handler."""
    method = _lookup(call.name, state)
    arguments = resolve_arguments(call.arguments, state.responses)
    context = CallContext(
        method=method.name,
        call_id=call.call_id,
        using=state.request.using,
        created_ids=state.created_ids,
        accounts=state.accounts,
        account=_check_account(method, arguments, state.accounts),
        env=state.env,
    )
    work = method.handler(context, arguments)
    result = await (_to_the_end(work) if method.writes else work)
    return _as_responses(result, method.name, call.call_id)


async def _to_the_end(work: Awaitable[HandlerResult]) -> HandlerResult:
    """Run a method that writes to its end even if the request is cancelled meanwhile.

    A request is cancelled when its client goes away; a /set cut half way would leave objects
    neither as they were nor as asked. The cancellation takes effect once the write is done
    (the calls after it do not run); a second one (the process must stop) cuts it.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if task.done():
            raise
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()
            raise
        failure = None if task.cancelled() else task.exception()
        if failure is not None:
            name = type(failure).__name__
            logger.warning("a write failed after its request was cancelled: %s", name)
        raise


def _outcome(
    call: Invocation, responses: list[Invocation], registry: MethodRegistry[EnvT]
) -> tuple[str, str]:
    """(method, outcome) of a call for :data:`CallObserver`; the first response decides."""
    method = registry.get(call.name)
    first = responses[0]
    outcome = str(first.arguments.get("type", "serverFail")) if first.name == "error" else "ok"
    return (method.name if method else UNKNOWN_METHOD), outcome


def _lookup(name: str, state: _RequestState[EnvT]) -> Method[EnvT]:
    """Find the method; one outside the client's opt-in set does not exist for it."""
    method = state.registry.get(name)
    if method is None:
        raise MethodError("unknownMethod", f"Unknown method {name!r}")
    # RFC 8620 1.8: the server MUST behave as though it does not implement anything
    # the client did not opt in to with "using".
    if method.capability not in state.request.using:
        raise MethodError("unknownMethod", f"{name} needs {method.capability!r} in using")
    return method


def _check_account(
    method: Method[EnvT], arguments: JsonObject, accounts: Mapping[str, AccountAccess]
) -> AccountAccess | None:
    """Resolve the method's account argument and check it may be used (RFC 8620 3.6.2)."""
    if method.account_arg is None:
        return None
    account_id = arguments.get(method.account_arg)
    if not isinstance(account_id, str):
        raise MethodError.invalid_arguments(
            f"{method.account_arg}: must be a String", arguments=[method.account_arg]
        )
    account = accounts.get(account_id)
    if account is None:
        raise MethodError("accountNotFound", f"No account {account_id!r}")
    if not _supports(account, method.capability):
        raise MethodError(
            "accountNotSupportedByMethod",
            f"{method.name} is not available in account {account_id!r}",
        )
    if method.writes and account.read_only:
        raise MethodError("accountReadOnly", f"Account {account_id!r} is read-only")
    return account


def _supports(account: AccountAccess, capability: str) -> bool:
    """Core methods (such as Blob/copy) work with every account.

    RFC 8620 2's own example Session lists no core capability in accountCapabilities,
    so requiring it would reject clients that follow the example.
    """
    return capability == CORE or capability in account.capabilities


def _as_responses(result: HandlerResult, name: str, call_id: str) -> list[Invocation]:
    """RFC 8620 3.2: every response initiated by a call carries that call's id."""
    if isinstance(result, dict):
        return [Invocation(name, result, call_id)]
    if not result:
        raise RuntimeError(f"handler of {name} returned no response")
    return [replace(response, call_id=call_id) for response in result]
