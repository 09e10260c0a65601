"""Blob ids of stored messages and their parts (RFC 8621 4.1.1 blobId, 4.1.4 blobId).

``M<email id>`` names a whole message, ``P<email id>_<partId with "-" for ".">`` one part;
the part is the last "_" field because partIds hold only digits and dots. A blob id means
nothing outside its account: the email id is looked up in the caller's own index.

``S<blob id>_<partId with "-" for ".">`` names a part of the message another blob holds, for
the parts Email/parse reports of a blob the upstream does not number: an upload, or a part
that holds a message without being a message/rfc822 part the upstream looks into. Its octets
are that part's content, cut from the other blob's; the other blob is read with the caller's
own account, so this id too leads nowhere in another account.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.mime.bodyparts import BodyPart

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
        email_id, part_id = _split_part(blob_id)
        if email_id and part_id:
            return BlobRef(email_id, part_id)
    return None


# ``S`` ids name parts of parts at most this deep (an upload holding a message attached as a
# file, holding another...): each level is a message read whole and parsed to cut the next
# from, so deeper ids name no blob, and Email/parse does not name the parts of a blob
# already this deep.
MAX_PART_NESTING = 3


@dataclass(frozen=True, slots=True)
class PartOfBlob:
    """A part of the message held in the blob ``source`` (not itself an ``S`` id): the part
    ``part_ids[0]``, or the part ``part_ids[1]`` of the message that part holds, and so on."""

    source: str
    part_ids: tuple[str, ...]


def part_of_blob_id(source: str, part_id: str) -> str:
    return f"S{source}_{part_id.replace('.', '-')}"


def parse_part_of_blob(blob_id: str) -> PartOfBlob | None:
    """The blob and parts an ``S`` blob id names; None if it is not one, or nests deeper
    than MAX_PART_NESTING. Read without recursion: each level is one ``S`` and one ``_``."""
    parts: list[str] = []
    while blob_id.startswith("S"):
        if len(parts) == MAX_PART_NESTING:
            return None
        source, part_id = _split_part(blob_id)
        if not source or part_id is None:
            return None
        parts.append(part_id)
        blob_id = source
    return PartOfBlob(blob_id, tuple(reversed(parts))) if parts else None


def parts_nameable(blob_id: str) -> bool:
    """Whether the parts of the message in ``blob_id`` can have ``S`` ids of their own."""
    if not blob_id.startswith("S"):
        return True
    part_of = parse_part_of_blob(blob_id)
    return part_of is not None and len(part_of.part_ids) < MAX_PART_NESTING


def _split_part(blob_id: str) -> tuple[str, str | None]:
    """What comes between the prefix letter and the last "_", and the partId after it."""
    head, sep, part = blob_id[1:].rpartition("_")
    return (head, part.replace("-", ".")) if sep and _PART.fullmatch(part) else ("", None)


def find_part(root: BodyPart, part_id: str) -> BodyPart | None:
    """The part a partId names, the parts of attached messages included.

    An attached message's parts are numbered below the part that holds it, as IMAP numbers
    sections (RFC 3501 6.4.5): Email/parse of that part reports them, so they must be found.
    """
    for part in root.walk():
        if part.part_id == part_id:
            return part
        inner = part.message
        if inner is not None and part_id.startswith(f"{part.part_id}."):
            return find_part(inner, part_id)
    return None
