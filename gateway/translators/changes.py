"""The /changes response (RFC 8620 5.2), the same for every data type."""

from __future__ import annotations

from typing import Any

from gateway.cache.changes import Changes


def changes_response(account_id: str, changes: Changes) -> dict[str, Any]:
    return {
        "accountId": account_id,
        "oldState": changes.old_state,
        "newState": changes.new_state,
        "hasMoreChanges": changes.has_more_changes,
        "created": changes.created,
        "updated": changes.updated,
        "destroyed": changes.destroyed,
    }
