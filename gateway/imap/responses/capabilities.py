"""CAPABILITY (RFC 3501 7.2.1) and ENABLED (RFC 5161 3.2)."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.imap.responses.tokens import Untagged, Value
from gateway.imap.responses.values import as_atom, expect_keyword


def parse_capabilities(values: Sequence[Value]) -> frozenset[str]:
    """Capabilities, upper-cased (RFC 3501 7.2.1: names are case-insensitive).

    Takes values, not a response, because they come both from ``* CAPABILITY`` (its
    ``values``) and from a ``[CAPABILITY ...]`` code (its ``args``).
    """
    return frozenset(as_atom(value, "capability").upper() for value in values)


def parse_enabled(response: Untagged) -> frozenset[str]:
    """Extensions confirmed by ``* ENABLED`` (RFC 5161 3.2), upper-cased."""
    values = expect_keyword(response, "ENABLED")
    return frozenset(as_atom(value, "ENABLED").upper() for value in values)
