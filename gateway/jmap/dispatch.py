"""The method table and the request processor (RFC 8620 3.3-3.7).

Every method is one `Method` row in a `MethodRegistry`; `process_request` reads the
table, checks capability opt-in and account access, resolves result references, runs
the handler and turns every error into a response. Handlers only raise.

The app environment `env` is opaque here (generic `EnvT`), so this layer never learns
about IMAP, caches or HTTP.

What one request can make the server produce is bounded here for every method alike: the
arguments a call resolves from references (by maxSizeRequest), and the method responses,
each encoded once as it is made and counted (CoreLimits.max_size_response). Every failure of
the server is logged with its cause and an incident id (gateway.jmap.incidents).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

import orjson

from gateway.jmap import incidents
from gateway.jmap.capabilities import CORE
from gateway.jmap.errors import MethodError
from gateway.jmap.protocol import Invocation, JsonObject, Request
from gateway.jmap.references import resolve_arguments
from gateway.jmap.standard import InvalidValue

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
# Octets of a response encoded between two turns of the other requests on the loop (about
# 5 ms of orjson's work on text).
ENCODE_SLICE = 1024 * 1024


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
    """Run the calls of a parsed request and return the Response object (RFC 8620 3.4).

    Each method response is encoded once, as it is made, and goes into the Response as an
    ``orjson.Fragment``: its size counts towards ``max_size_response`` without encoding
    everything again per call, and the final encoding only copies the fragments.
    """
    state = _RequestState(
        request, registry, accounts, env, dict(request.created_ids or {}), [], map_error
    )
    budget = _ResponseBudget(request.limits.max_size_response)
    encoded: list[orjson.Fragment] = []
    # RFC 8620 3.3: the method calls MUST be processed sequentially, in order.
    for index, call in enumerate(request.method_calls):
        if index:
            # A call that never waits (Core/echo) would otherwise run the next at once: give
            # the other requests on this loop their turn between calls.
            await asyncio.sleep(0)
        started = time.perf_counter()
        responses, fragments = await budget.admit(call, await _process_call(call, state, budget))
        if on_call is not None:
            on_call(*_outcome(call, responses, registry), time.perf_counter() - started)
        state.responses.extend(responses)
        encoded.extend(fragments)
    response: JsonObject = {"methodResponses": encoded, "sessionState": session_state}
    # RFC 8620 3.4: createdIds is returned only if given, with every id added since.
    if request.created_ids is not None:
        response["createdIds"] = state.created_ids
    return response


class _ResponseBudget:
    """The octets of method responses one request may produce (CoreLimits.max_size_response).

    Read-only calls are what can grow a response (an echo of references, a /get of many
    large objects): one whose response would pass the limit answers requestTooLarge
    instead, and once the limit is reached a read is not run at all. Errors are small, and
    a call that changed data keeps its response (bounded by maxObjectsInSet), or the client
    would not learn what changed.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit

    def too_large(self) -> MethodError:
        return MethodError(
            "requestTooLarge",
            f"The responses to this request would be larger than {self.limit} octets; "
            "ask for fewer objects or properties per request.",
        )

    async def admit(
        self, call: Invocation, made: tuple[list[Invocation], bool]
    ) -> tuple[list[Invocation], list[orjson.Fragment]]:
        """The responses to keep for ``call`` and their encodings, counted."""
        responses, wrote = made
        encoded = [await _encoded(response, call) for response in responses]
        size = sum(len(encoding) for _, encoding in encoded)
        failed = all(response.name == "error" for response, _ in encoded)
        if self.used + size > self.limit and not (wrote or failed):
            encoded = [await _encoded(_error(self.too_large(), call), call)]
            size = len(encoded[0][1])
        self.used += size
        return [response for response, _ in encoded], [orjson.Fragment(e) for _, e in encoded]


async def _encoded(response: Invocation, call: Invocation) -> tuple[Invocation, bytes]:
    """A response and its JSON; a value JSON cannot hold is a bug, answered serverFail.

    Encoding is one call into C that keeps the interpreter (megabytes of bodyValues take
    tens of milliseconds), so a /get's list is encoded object by object, giving the other
    requests on the loop their turn whenever ENCODE_SLICE octets have been made.
    """
    try:
        items = response.arguments.get("list")
        if not isinstance(items, list) or len(items) < 2:
            return response, orjson.dumps(response.to_json())
        encoded = []
        made = 0
        for item in items:
            piece = orjson.dumps(item)
            encoded.append(orjson.Fragment(piece))
            made += len(piece)
            if made >= ENCODE_SLICE:
                made = 0
                await asyncio.sleep(0)
        arguments = {**response.arguments, "list": encoded}
        return response, orjson.dumps([response.name, arguments, response.call_id])
    except orjson.JSONEncodeError as exc:
        error = _error(incidents.unexpected(call.name, call.call_id, exc), call)
        return error, orjson.dumps(error.to_json())


async def _process_call(
    call: Invocation, state: _RequestState[EnvT], budget: _ResponseBudget
) -> tuple[list[Invocation], bool]:
    """Run one call: its responses, and whether it may have changed data.

    RFC 8620 3.6.2: an error is a response and processing goes on. A failure of the server
    is logged with its cause and an incident id (gateway.jmap.incidents).
    """
    method = state.registry.get(call.name)
    writes = method is not None and method.writes
    try:
        if method is not None and not writes and budget.exhausted:
            raise budget.too_large()
        return await _run_call(call, state), writes
    except MethodError as error:
        failure = incidents.method_failure(call.name, call.call_id, error, error.__cause__)
        return [_error(failure, call)], writes
    except InvalidValue as problem:
        # A converter's refusal that no ArgReader collected is still the client's error.
        return [_error(MethodError.invalid_arguments(str(problem)), call)], writes
    except Exception as exc:
        mapped = state.map_error(exc) if state.map_error else None
        if mapped is None:
            return [_error(incidents.unexpected(call.name, call.call_id, exc), call)], writes
        if mapped.type not in incidents.FAILURES:
            logger.warning("%s in %s: %s", mapped.type, call.name, type(exc).__name__)
        failure = incidents.method_failure(call.name, call.call_id, mapped, exc)
        return [_error(failure, call)], writes


def _error(error: MethodError, call: Invocation) -> Invocation:
    return Invocation("error", error.to_arguments(), call.call_id)


async def _run_call(call: Invocation, state: _RequestState[EnvT]) -> list[Invocation]:
    """Look the method up, check access, resolve references and run the handler."""
    method = _lookup(call.name, state)
    max_size = state.request.limits.max_size_request
    arguments = resolve_arguments(call.arguments, state.responses, max_size)
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
    settle = incidents.settle_set_errors
    return [
        replace(response, arguments=settle(method.name, call.call_id, response.arguments))
        for response in _as_responses(result, method.name, call.call_id)
    ]


# Writes running now, so a stopping process can let them end before it closes what they use.
_WRITES: set[asyncio.Task[HandlerResult]] = set()


async def writes_finished(timeout: float) -> int:
    """Wait up to ``timeout`` seconds for the writes in flight; how many were still running.

    At shutdown the server cancels requests it gave up waiting for, which a write outlives
    (:func:`_to_the_end`); closing the upstream pools and Redis under it would cut it half way,
    e.g. a message sent whose record is never written, or a reply the client never gets.
    """
    pending = set(_WRITES)
    if pending:
        await asyncio.wait(pending, timeout=timeout)
    return sum(1 for task in pending if not task.done())


async def _to_the_end(work: Awaitable[HandlerResult]) -> HandlerResult:
    """Run a method that writes to its end even if the request is cancelled meanwhile.

    A request is cancelled when its client goes away; a /set cut half way would leave objects
    neither as they were nor as asked. The cancellation takes effect once the write is done
    (the calls after it do not run); a second one (the process must stop) cuts it.
    """
    task = asyncio.ensure_future(work)
    _WRITES.add(task)
    task.add_done_callback(_WRITES.discard)
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
