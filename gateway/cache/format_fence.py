"""What a read of the index does when the index is in another release's layout.

Writes are fenced in their script (gateway.cache.index_script refuses a batch on another
format); reads trust the index within the freshness window without a catch-up, so during a
rolling upgrade a replica could answer from a layout it does not know (every thread
notFound, a thread count of 0). The thread reads therefore read the format field with what
they read (in the same script or transaction) and pass it to :func:`check_format`.
"""

from __future__ import annotations

from gateway.cache.keys import INDEX_FORMAT


class NewerIndexFormat(Exception):
    """The account's index was written by a newer release than this one: during a rolling
    upgrade an old replica must neither reset it (the two releases would reset each other's
    index, each reset a whole re-index) nor write into a layout it does not know."""

    def __init__(self, stored: str) -> None:
        super().__init__(
            f"The account's index is in format {stored}, newer than this release's "
            f"{INDEX_FORMAT}: this server is being upgraded."
        )


class OlderIndexFormat(Exception):
    """The account's index is in an older release's layout although this replica trusted it
    as caught up: its next catch-up resets it (gateway.cache.index_format.ensure_current),
    so the caught-up mark is dropped (:attr:`account_id`'s) and the caller retries."""

    def __init__(self, account_id: str, stored: str) -> None:
        super().__init__(
            f"The account's index is in format {stored}, older than this release's "
            f"{INDEX_FORMAT}: it is being rebuilt."
        )
        self.account_id = account_id


def newer(stored: str | None) -> bool:
    return stored is not None and stored.isdigit() and int(stored) > INDEX_FORMAT


def check_format(account_id: str, stored: bytes | str | None) -> None:
    """Raise unless ``stored`` (the index's format field, read with the data) is this
    release's. An index not marked with a format (being reset, or damaged: see
    EmailStore._damaged) holds nothing of another layout and is read as it is."""
    if stored is None:
        return
    value = stored.decode() if isinstance(stored, bytes) else stored
    if value == str(INDEX_FORMAT):
        return
    if newer(value):
        raise NewerIndexFormat(value)
    raise OlderIndexFormat(account_id, value)
