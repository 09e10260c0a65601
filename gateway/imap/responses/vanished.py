"""VANISHED (RFC 7162 3.2.10): expunged UIDs, after QRESYNC or CHANGEDSINCE, or unsolicited."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.imap.errors import ProtocolError
from gateway.imap.responses.tokens import Untagged, Value
from gateway.imap.responses.values import as_uid_set, expect_keyword
from gateway.imap.sequence import UidSet


@dataclass(frozen=True, slots=True)
class Vanished:
    """RFC 7162 3.2.10: expunged UIDs; ``earlier`` for the catch-up form after QRESYNC."""

    earlier: bool
    uids: UidSet


def parse_vanished(response: Untagged) -> Vanished:
    values = expect_keyword(response, "VANISHED")
    earlier = len(values) == 2
    if len(values) not in (1, 2) or (earlier and not _is_earlier(values[0])):
        raise ProtocolError("malformed VANISHED response")
    return Vanished(earlier, as_uid_set(values[-1], "VANISHED"))


def _is_earlier(value: Value) -> bool:
    return isinstance(value, list) and len(value) == 1 and str(value[0]).upper() == "EARLIER"
