"""Blob ids of stored messages and their parts (RFC 8621 4.1.1 blobId, 4.1.4 blobId).

``M<email id>`` names a whole message, ``P<email id>_<partId with "-" for ".">`` one part;
the part is the last "_" field because partIds hold only digits and dots. A blob id means
nothing outside its account: the email id is looked up in the caller's own index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PART = re.compile(r"[0-9]+(?:-[0-9]+)*")


@dataclass(frozen=True, slots=True)
class BlobRef:
    email_id: str
    part_id: str | None  # None: the whole message


def message_blob_id(email_id: str) -> str:
    return f"M{email_id}"


def part_blob_id(email_id: str, part_id: str) -> str:
    return f"P{email_id}_{part_id.replace('.', '-')}"


def parse_blob_id(blob_id: str) -> BlobRef | None:
    """The message or part a blob id names; None if it is not a message blob id."""
    if blob_id.startswith("M") and len(blob_id) > 1:
        return BlobRef(blob_id[1:], None)
    if blob_id.startswith("P"):
        email_id, sep, part = blob_id[1:].rpartition("_")
        if sep and email_id and _PART.fullmatch(part):
            return BlobRef(email_id, part.replace("-", "."))
    return None
