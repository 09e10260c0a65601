"""What a method handler gets besides its arguments: the process's services and the caller.

A separate module so translators can name it without importing the service wiring, which
imports the translators to register their methods.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.auth import Principal
from gateway.imap.connection import ImapConnection

if TYPE_CHECKING:
    from gateway.services import Services


@dataclass(frozen=True)
class RequestEnv:
    services: Services
    principal: Principal
    # Per request: work done once however many calls need it (e.g. a mailbox sync).
    memo: dict[str, Any] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def upstream(self) -> AsyncIterator[ImapConnection]:
        """A logged-in upstream connection of the caller, for one method's work."""
        async with self.services.pool.connection(self.principal.login) as conn:
            yield conn
