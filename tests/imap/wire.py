"""The octets a command puts on the wire, for tests of the command builders."""

from __future__ import annotations

from gateway.imap.commands import Command, Literal


def wire(command: Command, **options: bool) -> bytes:
    """Tagged ``A1``; literals shown after a ``<sync>`` or ``<nonsync>`` marker."""
    out = b""
    for chunk in command.to_wire("A1", **options):
        if isinstance(chunk, Literal):
            out += (b"<sync>" if chunk.synchronizing else b"<nonsync>") + chunk.data
        else:
            out += chunk
    return out
