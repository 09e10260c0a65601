"""What the gateway sent upstream, read from its debug log (which names every command)."""

from __future__ import annotations

import pytest


def upstream_commands(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The commands the gateway sent upstream since the last call (tag dropped)."""
    sent = [
        str(record.args[0]).split(" ", 1)[1]
        for record in caplog.records
        if record.name == "gateway.imap.connection"
        and record.msg == "upstream <- %s"
        and isinstance(record.args, tuple)
    ]
    caplog.clear()
    return sent
