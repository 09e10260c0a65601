"""NAMESPACE (RFC 2342)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.imap.errors import ProtocolError
from gateway.imap.responses.tokens import Untagged, Value
from gateway.imap.responses.values import as_delimiter, as_list, decode_mailbox_name, expect_keyword


@dataclass(frozen=True, slots=True)
class Namespace:
    prefix: str
    delimiter: str | None


@dataclass(frozen=True, slots=True)
class Namespaces:
    personal: tuple[Namespace, ...]
    other_users: tuple[Namespace, ...]
    shared: tuple[Namespace, ...]


def parse_namespace(response: Untagged, *, utf8: bool = False) -> Namespaces:
    """``* NAMESPACE (("" "/")) NIL NIL``; per-namespace extension data is ignored."""
    values = expect_keyword(response, "NAMESPACE")
    if len(values) != 3:
        raise ProtocolError("NAMESPACE response needs three groups")
    personal, other, shared = (_namespace_group(v, utf8) for v in values)
    return Namespaces(personal, other, shared)


def _namespace_group(value: Value, utf8: bool) -> tuple[Namespace, ...]:
    if value is None:
        return ()
    group: list[Namespace] = []
    for entry in as_list(value, "NAMESPACE"):
        fields = as_list(entry, "NAMESPACE entry")
        if len(fields) < 2 or not isinstance(fields[0], bytes):
            raise ProtocolError("malformed NAMESPACE entry")
        prefix = decode_mailbox_name(fields[0], utf8=utf8) if fields[0] else ""
        group.append(Namespace(prefix, as_delimiter(fields[1])))
    return tuple(group)
