"""What one listener has not been told yet: at most one state per type, the newest.

A slow or stalled reader costs one small map, never a queue of changes (RFC 8620 7.1: a
StateChange only says which types moved and to which state, so later states replace earlier
ones without loss). ``known`` is what the listener last received, or was primed with (what a
client said it had, or the initial event): a state equal to it, or older, is not sent again.
"""

from __future__ import annotations

from gateway.push import PUSH_TYPES, TypeStates
from gateway.push.states import newer


class Pending:
    """The per-listener map of type -> newest state not yet delivered.

    Both maps are None while empty: most listeners are idle most of the time, and an empty
    dict costs as much as a small one.
    """

    __slots__ = ("_known", "_waiting")

    def __init__(self) -> None:
        self._known: TypeStates | None = None
        self._waiting: TypeStates | None = None

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def merge(self, changed: TypeStates, types: frozenset[str] | None) -> bool:
        """Take in announced states (of the types in ``types``, None: all push knows); True
        when something now waits to be delivered."""
        allowed = PUSH_TYPES if types is None else types
        for data_type, state in changed.items():
            if data_type not in allowed:
                continue
            waiting = self._waiting.get(data_type) if self._waiting else None
            base = waiting if waiting is not None else self._known_state(data_type)
            if base is None or newer(base, state):
                if self._waiting is None:
                    self._waiting = {}
                self._waiting[data_type] = state
        return bool(self._waiting)

    def prime(self, sent: TypeStates) -> None:
        """The listener knows these states: what waits and is not newer is dropped."""
        if not sent:
            return
        if self._known is None:
            self._known = {}
        self._known.update(sent)
        if self._waiting:
            for data_type, state in sent.items():
                waiting = self._waiting.get(data_type)
                if waiting is not None and not newer(state, waiting):
                    del self._waiting[data_type]
            if not self._waiting:
                self._waiting = None

    def restrict(self, types: frozenset[str] | None) -> None:
        """Drop waiting states of types the listener no longer asks for."""
        if self._waiting and types is not None:
            self._waiting = {t: s for t, s in self._waiting.items() if t in types} or None

    def take(self) -> TypeStates | None:
        """What waits, now counted as delivered; None when nothing does."""
        waiting, self._waiting = self._waiting, None
        if waiting:
            if self._known is None:
                self._known = {}
            self._known.update(waiting)
        return waiting or None

    def known(self) -> TypeStates:
        """What the listener has been told or primed with (a copy)."""
        return dict(self._known or {})

    def _known_state(self, data_type: str) -> str | None:
        return self._known.get(data_type) if self._known else None
