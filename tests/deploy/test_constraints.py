"""deploy/constraints.txt pins every runtime dependency, at the versions the tests run with.

The image installs with these pins and the test venv too (tools/install.sh), so what ships is
what was tested; a new dependency in pyproject.toml without a pin, or a pin the tests did not
run, fails here instead of drifting silently.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

CONSTRAINTS = Path(__file__).resolve().parents[2] / "deploy" / "constraints.txt"
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)$")


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = _PIN.fullmatch(line.strip())
        assert match, f"not an exact pin: {line!r}"
        found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def runtime_closure(distribution: str) -> set[str]:
    """The distributions ``distribution`` needs at run time (no extras), transitively."""
    needed: set[str] = set()
    pending = [distribution]
    while pending:
        name = pending.pop()
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            dependency = canonicalize_name(requirement.name)
            if dependency not in needed:
                needed.add(dependency)
                pending.append(dependency)
    return needed


def test_every_runtime_dependency_is_pinned_at_the_tested_version() -> None:
    pinned = pins()
    needed = runtime_closure("jmap-gateway")
    assert needed <= pinned.keys(), f"unpinned: {sorted(needed - pinned.keys())}"
    for name in needed:
        assert metadata.version(name) == pinned[name], name


def test_the_gateway_itself_is_not_pinned() -> None:
    assert "jmap-gateway" not in pins()


def test_pins_satisfy_what_pyproject_asks() -> None:
    pinned = pins()
    for text in metadata.requires("jmap-gateway") or []:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        version = pinned[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), requirement
