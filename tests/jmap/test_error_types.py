"""The error types are closed sets mypy knows: a misspelt type fails type checking where the
error is built, before any test runs the line that builds it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from mypy import api

from gateway.jmap.errors import MethodError, RequestError, SetError

ROOT = Path(__file__).parent.parent.parent

# One good and one misspelt call of each constructor, the misspelt ones on known lines.
PROBE = """\
from gateway.jmap.errors import MethodError, RequestError, SetError
from gateway.mime.header_writer import ComposeError

MethodError("serverFail")
SetError("overQuota")
RequestError("notJSON", "detail")
ComposeError("tooLarge")
MethodError("serverFial")
SetError("overquota")
RequestError("notJson", "detail")
MethodError("mailboxHasChild")
ComposeError("overQuota")
"""


def test_mypy_refuses_misspelt_and_misplaced_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # where mypy finds the gateway package
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    out, _, status = api.run(
        [
            "--config-file=",
            "--strict",
            "--python-version=3.11",
            f"--cache-dir={tmp_path / 'cache'}",
            "--no-error-summary",
            str(probe),
        ]
    )
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1, out
    assert [int(line.split(":")[1]) for line in errors] == [8, 9, 10, 11, 12], out
    assert all("[arg-type]" in line for line in errors), out


def test_types_reach_the_wire_as_plain_strings() -> None:
    """The Literal types are str at run time: orjson writes them as the RFC names them."""
    assert orjson.loads(orjson.dumps(SetError("overQuota").to_dict())) == {"type": "overQuota"}
    method = orjson.dumps(MethodError("serverFail", "x").to_arguments())
    assert method == b'{"type":"serverFail","description":"x"}'
    request = orjson.dumps(RequestError("notJSON", "x").to_problem())
    assert b'"type":"urn:ietf:params:jmap:error:notJSON"' in request
