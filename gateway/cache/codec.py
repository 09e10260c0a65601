"""msgpack, the value encoding of every structured Redis value.

Binary-safe and several times smaller than JSON for the id maps and per-email records the index
keeps; ``use_bin_type`` keeps ``bytes`` and ``str`` apart on the way back.
"""

from __future__ import annotations

from typing import Any

import msgpack


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def octets(value: bytes | str) -> bytes:
    """A Redis reply as bytes (the client's stubs allow str too)."""
    return value if isinstance(value, bytes) else value.encode()


def text(value: bytes | str) -> str:
    """A Redis reply as text (the client returns bytes; tests may hand in str)."""
    return value.decode() if isinstance(value, bytes) else value
