"""The current states of an account, and which of two states of a type is the later one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.cache.changes import CannotCalculateChanges, parse_state
from gateway.push import PUSH_TYPES, TypeStates

if TYPE_CHECKING:
    from gateway.services import Services


async def current_states(
    svc: Services, account_id: str, types: frozenset[str] | None = None
) -> TypeStates:
    """The state of each type push knows (or of those of ``types`` it knows), exactly as the
    type's /get answers it: what a client compares a pushed state with."""
    offered = offered_types(svc)
    wanted = offered if types is None else types & offered
    return await svc.store.account(account_id).states(sorted(wanted))


def offered_types(svc: Services) -> frozenset[str]:
    """The push types whose methods this deployment serves: Identity and EmailSubmission only
    where sending is configured, as the Session's capabilities say. A client is never told the
    state of a type it cannot fetch."""
    return frozenset(t for t in PUSH_TYPES if svc.registry.get(f"{t}/get") is not None)


def newer(a: str, b: str) -> bool:
    """Whether state ``b`` is later than state ``a`` of the same type.

    Within one epoch the modseq orders them. A state of another epoch (Redis lost the data and
    a new epoch began, cache/changes.py) counts as newer: the client must hear of it, as the
    states it holds can no longer be calculated from. Strings that are not states of ours are
    newer when they differ.
    """
    try:
        epoch_a, modseq_a = parse_state(a)
        epoch_b, modseq_b = parse_state(b)
    except CannotCalculateChanges:
        return a != b
    return epoch_a != epoch_b or modseq_b > modseq_a
