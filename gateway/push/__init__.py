"""Push to connected clients (RFC 8620 7, RFC 8887): the vocabulary every part of push shares.

A change committed to an account's index is announced on the account's Redis channel; every
replica with listeners of that account merges it into each listener's pending state map, which
the EventSource and WebSocket writers drain. Watchers turn upstream IMAP changes into catch-ups,
whose commits take the same path, so there is one way a change reaches a client.
"""

from __future__ import annotations

import enum

# RFC 8620 7.1: TypeState, the new state string of each changed type of one account.
TypeStates = dict[str, str]
# RFC 8620 7.1: StateChange.changed, accountId -> TypeState.
Changed = dict[str, TypeStates]


class CloseReason(enum.Enum):
    """Why the gateway ended a push stream; each transport maps it to its own signal."""

    SHUTDOWN = "shutdown"  # drain on SIGTERM: EventSource ends, WebSocket closes 1001
    UNAUTHORIZED = "unauthorized"  # credentials refused upstream or on recheck: WebSocket 1008
    # A push token's stream lifetime is over: WebSocket 1008 (S105: a reason, not a secret).
    TOKEN_EXPIRED = "token-expired"  # noqa: S105


# The journal's type names push knows; a client asking for another name is ignored (RFC 8620
# 7.3: "types" lists the types the client is interested in).
PUSH_TYPES: frozenset[str] = frozenset(
    {"Mailbox", "Email", "Thread", "Identity", "EmailSubmission"}
)
