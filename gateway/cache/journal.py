"""The one place every state change of an account passes through.

Every write that moves a data type's state (the mailbox sync, the email index writer, a
client's sortOrder) logs it with :meth:`Journal.log` inside its own transaction, and hands the
transaction's replies to :meth:`Journal.committed` once EXEC returned. The journal turns them
into the (data type, new state) pairs that write made and announces them to the process's
listeners (:func:`listening`), so nothing can change without the announcement.

Push (RFC 8620 7) hooks in at :meth:`Journal.committed`: the change hub (push/hub.py) is a
listener, and publishes each announcement on the account's channel (cache/pushbus.py,
``PUBLISH``, sharded on a cluster) after the commit, so a client told of a state can always
read it. Listeners run in the writer's call stack: they must neither await nor raise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from gateway.cache.changes import AccountState, format_state
from gateway.cache.codec import text


@dataclass(frozen=True, slots=True)
class StateChange:
    """A data type of an account moved to ``state`` (RFC 8620 7.1 StateChange, per type)."""

    data_type: str
    state: str


# Told, after the commit, of the account whose types changed and their new states.
Listener = Callable[[str, Sequence[StateChange]], None]
_listeners: list[Listener] = []


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Hear of every state change committed in this process while the block runs."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


@dataclass(slots=True)
class Journal:
    """The change-log entries of one transaction, and what they did once it committed.

    Entries are queued last in the transaction (:meth:`log` before EXEC, nothing queued
    after it), so their replies are the last ones EXEC returns.
    """

    state: AccountState
    # Per entry queued: its data type, and whether it named any id (an entry naming none
    # still makes the account's epoch and counter exist, but changes no state).
    _types: list[tuple[str, bool]] = field(default_factory=list)

    async def log(
        self,
        pipe: Pipeline | ClusterPipeline,
        data_type: str,
        *,
        created: Iterable[str] = (),
        updated: Iterable[str] = (),
        destroyed: Iterable[str] = (),
        minor: Iterable[str] = (),
    ) -> None:
        """Queue the change-log entries of one data type in ``pipe``'s transaction (see
        AccountState.record for what each list means)."""
        lists = [list(created), list(updated), list(destroyed), list(minor)]
        await self.state.record(
            data_type,
            created=lists[0],
            updated=lists[1],
            destroyed=lists[2],
            minor=lists[3],
            pipe=pipe,
        )
        self._types.append((data_type, any(lists)))

    def expect(self, data_type: str, changed: bool) -> None:
        """A change-log entry written by a script of its own (gateway.cache.index_script),
        whose [epoch, modseq] the replies handed to :meth:`committed` end with."""
        self._types.append((data_type, changed))

    def committed(self, replies: Sequence[Any]) -> list[StateChange]:
        """The states the committed transaction moved to, announced to the listeners.

        ``replies``: what EXEC returned; the change-log script answers [epoch, modseq].
        Push publishes here (see the module's docstring).
        """
        logged = replies[len(replies) - len(self._types) :] if self._types else []
        changes = [
            StateChange(data_type, format_state(text(epoch), int(modseq)))
            for (data_type, changed), (epoch, modseq) in zip(self._types, logged, strict=True)
            if changed
        ]
        self._types.clear()
        if changes:
            for listener in list(_listeners):
                listener(self.state.keys.account_id, changes)
        return changes
