"""What one translator package adds to the gateway: its methods and the capability they need.

Each package declares a :class:`Spec` in its ``__init__``; ``gateway.services`` lists the specs
and :func:`collect` turns them into the method table and the Session's capability objects, so a
new data type is one package and one line there. A capability several packages share (RFC 8621's
mail covers Mailbox, Email, Thread and SearchSnippet) has its objects declared by exactly one of
them; the others name its URN.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.config import Settings
from gateway.env import RequestEnv
from gateway.jmap.dispatch import Method, MethodRegistry
from gateway.jmap.protocol import JsonObject
from gateway.smtp.extensions import Extensions


@dataclass(frozen=True)
class Discovered:
    """What the gateway learnt from its upstream servers rather than from its settings.

    ``smtp_extensions`` is the submission server's EHLO answer (None: not known yet);
    ``delayed_send`` whether messages can be sent without the user present (a service account
    or a relay trusting the gateway). The Session is rebuilt when these change.
    """

    smtp_extensions: Extensions | None = None
    delayed_send: bool = False


# Builds a capability object from the deployment's settings and what it discovered; at
# start-up, and again when a discovered fact changes.
CapabilityObject = Callable[[Settings, Discovered], JsonObject]


@dataclass(frozen=True)
class Capability:
    """A capability (RFC 8620 2) and the objects the Session shows for it.

    ``session`` is its value under the Session's ``capabilities``; ``account`` its value under
    an account's ``accountCapabilities``, or None when accounts do not list it (core). A
    capability with an account object names the user's account in ``primaryAccounts``.
    """

    urn: str
    session: CapabilityObject
    account: CapabilityObject | None = None


def always(settings: Settings) -> bool:
    """A package every deployment offers."""
    return True


@dataclass(frozen=True)
class Spec:
    """One package's methods, the capability URN they need, and what capability it declares.

    ``offered`` says whether a deployment offers the package at all: sending needs an SMTP
    server, so without one neither its methods nor its capability exist (RFC 8620 2: the
    Session lists only what the server supports).
    """

    capability: str
    methods: tuple[Method[RequestEnv], ...]
    declares: Capability | None = None
    offered: Callable[[Settings], bool] = always

    def __post_init__(self) -> None:
        """A method of another capability belongs in that capability's package."""
        for method in self.methods:
            if method.capability != self.capability:
                raise ValueError(f"{method.name} needs {method.capability}, not {self.capability}")
        if self.declares is not None and self.declares.urn != self.capability:
            raise ValueError(f"a package needing {self.capability} declares {self.declares.urn}")


@dataclass(frozen=True)
class Catalog:
    """The collected specs: what the dispatcher runs and what the Session advertises."""

    registry: MethodRegistry[RequestEnv]
    # RFC 8620 2: the Session's capabilities, which are also what "using" may name.
    capabilities: dict[str, JsonObject]
    # The accountCapabilities of a user's own account.
    account_capabilities: dict[str, JsonObject]


def method_registry(specs: Iterable[Spec]) -> MethodRegistry[RequestEnv]:
    """The method table of ``specs``; a method named twice fails at start-up."""
    registry: MethodRegistry[RequestEnv] = MethodRegistry()
    for spec in specs:
        for method in spec.methods:
            registry.add(method)
    return registry


def collect(
    specs: Iterable[Spec], settings: Settings, discovered: Discovered | None = None
) -> Catalog:
    """The catalog of the ``specs`` the deployment offers, in their order; each capability is
    declared exactly once."""
    discovered = discovered or Discovered()
    specs = tuple(spec for spec in specs if spec.offered(settings))
    declared: dict[str, Capability] = {}
    for spec in specs:
        if spec.declares is None:
            continue
        if spec.capability in declared:
            raise ValueError(f"{spec.capability} is declared twice")
        declared[spec.capability] = spec.declares
    for spec in specs:
        if spec.capability not in declared:
            raise ValueError(f"no package declares {spec.capability}")
    return Catalog(
        registry=method_registry(specs),
        capabilities={
            urn: capability.session(settings, discovered) for urn, capability in declared.items()
        },
        account_capabilities={
            urn: capability.account(settings, discovered)
            for urn, capability in declared.items()
            if capability.account is not None
        },
    )
