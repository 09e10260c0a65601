"""Response codes with data: APPENDUID and COPYUID (RFC 4315 3), MODIFIED (RFC 7162 3.1.3)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.imap.errors import ProtocolError
from gateway.imap.responses.tokens import ResponseCode, Value
from gateway.imap.responses.values import as_atom, as_int, as_uid_set
from gateway.imap.sequence import UidSet, parse_ranges


@dataclass(frozen=True, slots=True)
class AppendUid:
    """RFC 4315 3: ``[APPENDUID uidvalidity uids]`` (several UIDs after MULTIAPPEND)."""

    uidvalidity: int
    uids: UidSet


@dataclass(frozen=True, slots=True)
class CopyUid:
    """RFC 4315 3: ``[COPYUID uidvalidity source destination]``.

    The ranges are kept in the order the server wrote them: the n-th source UID became the
    n-th destination UID.
    """

    uidvalidity: int
    source: tuple[tuple[int, int], ...]
    destination: tuple[tuple[int, int], ...]

    def pairs(self) -> Iterable[tuple[int, int]]:
        """(source UID, destination UID) pairs, lazily."""
        return zip(_expand(self.source), _expand(self.destination), strict=True)


def _expand(ranges: Iterable[tuple[int, int]]) -> Iterable[int]:
    for low, high in ranges:
        yield from range(low, high + 1)


def parse_appenduid(code: ResponseCode) -> AppendUid:
    """The APPENDUID code of a tagged OK to APPEND."""
    args = _code_args(code, "APPENDUID", 2)
    return AppendUid(as_int(args[0], "UIDVALIDITY"), as_uid_set(args[1], "APPENDUID"))


def parse_copyuid(code: ResponseCode) -> CopyUid:
    """The COPYUID code of a tagged OK to COPY, or of an untagged OK during MOVE."""
    args = _code_args(code, "COPYUID", 3)
    source, destination = (_ordered_ranges(arg) for arg in args[1:])
    if sum(h - lo + 1 for lo, h in source) != sum(h - lo + 1 for lo, h in destination):
        raise ProtocolError("COPYUID source and destination sets differ in size")
    return CopyUid(as_int(args[0], "UIDVALIDITY"), source, destination)


def parse_modified(code: ResponseCode) -> UidSet:
    """RFC 7162 3.1.3: ``[MODIFIED set]`` of a STORE with UNCHANGEDSINCE: the messages it
    left alone because they changed after the given modseq (UIDs for UID STORE)."""
    return as_uid_set(_code_args(code, "MODIFIED", 1)[0], "MODIFIED")


def _ordered_ranges(value: Value) -> tuple[tuple[int, int], ...]:
    try:
        return tuple(parse_ranges(as_atom(value, "COPYUID")))
    except ValueError:
        raise ProtocolError("invalid sequence set in COPYUID") from None


def _code_args(code: ResponseCode, name: str, count: int) -> list[Value]:
    if code.name != name or len(code.args) != count:
        raise ProtocolError(f"expected [{name}] with {count} arguments")
    return code.args
