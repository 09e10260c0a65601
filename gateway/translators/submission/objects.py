"""EmailSubmission objects (RFC 8621 7) built from the store's records, and their properties.

One table for every method of the type: /get validates ``properties`` against it, /set reads
which properties a client may give (none server-set) or change (undoStatus alone).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from gateway.cache.submissions import DeliveryStatus, SubmissionRecord
from gateway.jmap.properties import Property, PropertyTable


def _delivery_status(record: SubmissionRecord) -> dict[str, dict[str, str]] | None:
    """RFC 8621 7: per recipient address, the SMTP reply, delivered and displayed."""
    if record.delivery_status is None:
        return None
    return {address: _status(status) for address, status in record.delivery_status.items()}


def _status(status: DeliveryStatus) -> dict[str, str]:
    return {
        "smtpReply": status.smtp_reply,
        "delivered": status.delivered,
        "displayed": status.displayed,
    }


def _row(
    name: str,
    read: Callable[[SubmissionRecord], Any],
    *,
    server_set: bool = False,
    immutable: bool = False,
) -> Property[None]:
    return Property(
        name, None, server_set=server_set, immutable=immutable, always=name == "id", read=read
    )


# RFC 8621 7: the EmailSubmission properties, in the order /get returns them by default.
PROPERTIES: Final = PropertyTable(
    [
        _row("id", lambda r: r.id, server_set=True, immutable=True),
        _row("identityId", lambda r: r.identity_id, immutable=True),
        _row("emailId", lambda r: r.email_id, immutable=True),
        _row("threadId", lambda r: r.thread_id, server_set=True, immutable=True),
        _row("envelope", lambda r: r.envelope, immutable=True),
        _row("sendAt", lambda r: r.send_at, server_set=True, immutable=True),
        _row("undoStatus", lambda r: r.undo_status),
        _row("deliveryStatus", _delivery_status, server_set=True),
        _row("dsnBlobIds", lambda r: list(r.dsn_blob_ids), server_set=True),
        _row("mdnBlobIds", lambda r: list(r.mdn_blob_ids), server_set=True),
    ],
    unknown="unknown EmailSubmission properties {}",
)


_READERS: Final = {row.name: row.read for row in PROPERTIES if row.read is not None}


def render(record: SubmissionRecord, properties: list[str]) -> dict[str, Any]:
    """The EmailSubmission object of ``record`` with exactly ``properties`` (all in the
    table: PropertyTable.select checked them)."""
    return {name: _READERS[name](record) for name in properties}
