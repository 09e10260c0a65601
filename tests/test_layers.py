"""The layers of ARCHITECTURE.md: each package imports only what it may."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

GATEWAY = Path(__file__).parent.parent / "gateway"

# package -> gateway packages and modules it must never import
FORBIDDEN = {
    "jmap": {"imap", "cache", "translators", "app", "services", "auth", "upstream", "config"},
    "imap": {"jmap", "cache", "translators", "app", "services", "auth", "upstream", "config"},
    "cache": {"jmap", "imap", "translators", "app", "services", "auth", "upstream"},
    # MIME knows messages, not protocols: no JMAP core, IMAP, Redis or wiring.
    "mime": {"jmap", "imap", "cache", "translators", "app", "services", "auth", "upstream"},
}
THIRD_PARTY_FORBIDDEN = {
    "jmap": {"fastapi", "starlette", "redis", "uvicorn"},
    "mime": {"fastapi", "starlette", "redis", "uvicorn"},
}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_stay_in_their_layer(package: str) -> None:
    files = sorted((GATEWAY / package).glob("*.py"))
    assert files
    for path in files:
        for name in imports_of(path):
            parts = name.split(".")
            if parts[0] == "gateway" and len(parts) > 1:
                assert parts[1] not in FORBIDDEN[package], f"{path.name} imports {name}"
            assert parts[0] not in THIRD_PARTY_FORBIDDEN.get(package, set()), (
                f"{path.name} imports {name}"
            )
