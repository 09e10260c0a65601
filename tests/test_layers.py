"""The layers of the README's "How it is built": each package imports only what it may.

Every module of a package is checked, however deep, and relative imports count as the absolute
names they stand for. The rules are data (``RULES``); the checker is a pure function of a
module's source and place, so the last tests plant violations in synthetic modules and show
that each kind of rule would catch one.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

GATEWAY = Path(__file__).parent.parent / "gateway"

# The HTTP/WebSocket surface and process wiring: only the top level may know them.
_SURFACE = frozenset(
    {"app", "http", "http_protocol", "blob_routes", "server", "services", "runner", "problems"}
)
_WEB = frozenset({"fastapi", "starlette", "uvicorn", "httptools"})
# A cache store's Redis client and key names: only cache/ reaches through a store to them.
_STORE_INSIDES = frozenset({"client", "keys", "pipeline"})


@dataclass(frozen=True)
class Rule:
    """What one package of ``gateway`` must never import."""

    gateway: frozenset[str]  # first-level names under gateway (packages or modules)
    third_party: frozenset[str] = frozenset()  # top-level distributions
    # (module, name) pairs that must not be imported or used by attribute.
    names: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    # Attributes that must not be read (called as methods they are allowed: ``d.keys()``).
    attributes: frozenset[str] = frozenset()


RULES: dict[str, Rule] = {
    # The JMAP core: no I/O, no upstream, no Redis, no wiring.
    "jmap": Rule(
        _SURFACE
        | {"imap", "smtp", "cache", "sync", "translators", "auth", "upstream", "config", "mime"},
        _WEB | {"redis", "msgpack"},
    ),
    # The upstream transport: knows nothing of JMAP or of the gateway's state.
    "imap": Rule(
        _SURFACE
        | {"jmap", "smtp", "cache", "sync", "translators", "auth", "upstream", "config", "mime"},
        _WEB | {"redis", "msgpack"},
    ),
    # The SMTP submission client, like imap/: knows nothing of JMAP, IMAP or the gateway's state.
    "smtp": Rule(
        _SURFACE
        | {"jmap", "imap", "cache", "sync", "translators", "auth", "upstream", "config", "mime"},
        _WEB | {"redis", "msgpack"},
    ),
    # The Redis state: the only package that knows keys and encodings.
    "cache": Rule(
        _SURFACE | {"jmap", "imap", "smtp", "sync", "translators", "auth", "upstream", "mime"},
        _WEB,
    ),
    # MIME knows messages, not protocols.
    "mime": Rule(
        _SURFACE | {"jmap", "imap", "smtp", "cache", "sync", "translators", "auth", "upstream"},
        _WEB | {"redis", "msgpack"},
    ),
    # Catch-up: IMAP in, index out through cache/'s methods; no JMAP, no Redis of its own.
    "sync": Rule(
        _SURFACE | {"jmap", "smtp", "translators", "auth", "upstream"},
        _WEB | {"redis", "msgpack"},
        attributes=_STORE_INSIDES,
    ),
    # Translators: JMAP methods over the stores and the typed IMAP calls; no HTTP, no Redis,
    # no encodings, and no hand-built IMAP commands.
    "translators": Rule(
        _SURFACE,
        _WEB | {"redis", "msgpack"},
        frozenset({("gateway.imap.commands", "Command")}),
        _STORE_INSIDES,
    ),
    # Push: hub, watchers and streams over the index, the upstream and the API runner (through
    # Services and problems); the HTTP framing and the server stay at the top level, Redis and
    # its encodings in cache/.
    "push": Rule(
        frozenset({"app", "http", "http_protocol", "blob_routes", "server", "smtp", "translators"}),
        _WEB | {"redis", "msgpack"},
        attributes=_STORE_INSIDES,
    ),
    # Outbound Web Push: URLs, encryption, VAPID and the HTTP client; no JMAP, no upstream,
    # no Redis (the delivery worker in push/ joins them).
    "webpush": Rule(
        _SURFACE
        | {"jmap", "imap", "smtp", "cache", "sync", "translators", "auth", "upstream", "mime"}
        | {"push"},
        _WEB | {"redis", "msgpack"},
    ),
}


def _absolute(module: str | None, level: int, place: tuple[str, ...]) -> str:
    """The absolute name a (possibly relative) ``from`` import stands for."""
    if not level:
        return module or ""
    base = place[: len(place) - level]
    return ".".join([*base, module] if module else base)


def violations(source: str, place: tuple[str, ...]) -> list[str]:
    """What the module at ``place`` (e.g. ``("gateway", "sync", "catch_up")``) breaks."""
    rule = RULES.get(place[1]) if len(place) > 2 else None
    if rule is None:
        return []
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> module it is bound to
    tree = ast.parse(source)
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}

    def check_module(name: str) -> bool:
        parts = name.split(".")
        forbidden = parts[0] in rule.third_party or (
            parts[0] == "gateway" and len(parts) > 1 and parts[1] in rule.gateway
        )
        if forbidden:
            found.append(f"imports {name}")
        return forbidden

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check_module(alias.name)
                aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node.module, node.level, place)
            whole = check_module(module)
            for alias in node.names:
                if not whole:
                    check_module(f"{module}.{alias.name}")
                if (module, alias.name) in rule.names:
                    found.append(f"imports {alias.name} from {module}")
                aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
        elif isinstance(node, ast.Attribute):
            if node.attr in rule.attributes and id(node) not in called:
                found.append(f"reads .{node.attr}")
            bound = aliases.get(node.value.id) if isinstance(node.value, ast.Name) else None
            if bound and (bound, node.attr) in rule.names:
                found.append(f"uses {bound}.{node.attr}")
    return found


def _modules() -> list[Path]:
    return sorted(p for p in GATEWAY.rglob("*.py") if p.parent != GATEWAY)


def _place(path: Path) -> tuple[str, ...]:
    return ("gateway", *path.relative_to(GATEWAY).with_suffix("").parts)


def test_every_package_has_a_rule() -> None:
    """A new package must say what it may import before its modules are written."""
    packages = {p.relative_to(GATEWAY).parts[0] for p in _modules()}
    assert packages <= set(RULES), packages - set(RULES)


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_imports_stay_in_their_layer(package: str) -> None:
    paths = [p for p in _modules() if p.relative_to(GATEWAY).parts[0] == package]
    assert paths
    broken = {
        str(path.relative_to(GATEWAY)): found
        for path in paths
        if (found := violations(path.read_text(), _place(path)))
    }
    assert not broken


@pytest.mark.parametrize(
    ("place", "source", "expected"),
    [
        # Deep in a package, a relative import reaching into a forbidden layer.
        (
            ("gateway", "jmap", "sub", "deep"),
            "from ...cache import keys\n",
            "imports gateway.cache",
        ),
        (("gateway", "sync", "catch_up"), "import redis.asyncio\n", "imports redis.asyncio"),
        (("gateway", "translators", "x"), "import msgpack\n", "imports msgpack"),
        (
            ("gateway", "translators", "email", "x"),
            "from gateway.imap.commands import Command\n",
            "imports Command from gateway.imap.commands",
        ),
        (
            ("gateway", "translators", "email", "x"),
            "from gateway.imap import commands as c\nc.Command('NOOP')\n",
            "uses gateway.imap.commands.Command",
        ),
        (
            ("gateway", "translators", "x"),
            "from gateway import services\n",
            "imports gateway.services",
        ),
        (
            ("gateway", "imap", "x"),
            "from gateway.jmap.errors import SetError\n",
            "imports gateway.jmap.errors",
        ),
        (("gateway", "cache", "x"), "from fastapi import Request\n", "imports fastapi"),
        (
            ("gateway", "sync", "x"),
            "async def f(store):\n    await store.client.exists(store.keys.caught_up)\n",
            "reads .client",
        ),
    ],
)
def test_a_planted_violation_is_caught(place: tuple[str, ...], source: str, expected: str) -> None:
    assert expected in violations(source, place)


def test_allowed_imports_pass() -> None:
    """The checker is not simply refusing everything: the layers' own imports are allowed."""
    source = (
        "from gateway.cache.emails import EmailStore\n"
        "from gateway.imap.fetch import uid_fetch\n"
        "from gateway.jmap.errors import SetError\n"
        "from . import objects\n"
        "names = sorted(mapping.keys())\n"
    )
    assert violations(source, ("gateway", "translators", "mailbox", "get")) == []
