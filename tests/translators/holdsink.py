"""An SMTP sink for the delayed-send tests: aiosmtpd on a free loopback port, recording every
message it accepted with its envelope, so tests count what arrived.

Recipients steer it: ``slow-*`` answers RCPT after :attr:`Sink.slow_seconds` (a send held
open before its "."), ``slowdata-*`` has the message recorded at once but the reply to the
final "." wait as long (a send held open after its "."), ``tempfail-*`` gets 451, ``reject-*``
550. With ``future_release`` it advertises RFC
4865 FUTURERELEASE and accepts HOLDFOR/HOLDUNTIL on MAIL (recorded, not acted upon).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.servers import free_ports

HOLD_PARAMETERS = ("HOLDFOR", "HOLDUNTIL")


@dataclass(frozen=True)
class Received:
    mail_from: str
    mail_options: tuple[str, ...]
    recipients: tuple[str, ...]
    content: bytes


@dataclass
class Sink:
    future_release: int | None = None
    slow_seconds: float = 2.0
    received: list[Received] = field(default_factory=list)
    # Every RCPT address as it arrives (before a slow one is answered).
    rcpts: list[str] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> Sink:
        (self.port,) = free_ports(1)
        sink = self

        class Server(SMTP):
            def _getparams(self, params: Sequence[str]) -> dict[str, str | bool] | None:
                found = super()._getparams(params)
                if found is not None and sink.future_release is not None:
                    for name in HOLD_PARAMETERS:
                        found.pop(name, None)
                return found

        class Sinking(Controller):
            def factory(self) -> SMTP:
                return Server(self.handler, **self.SMTP_kwargs)

        self._controller = Sinking(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def messages(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def to(self, address: str) -> list[Received]:
        return [r for r in self.messages() if address in r.recipients]


class _Handler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.sink.future_release is None:
            return responses
        # RFC 4865 3: FUTURERELEASE <max interval> <max date-time>; before the last line.
        last = responses[-1].replace("250 ", "250-", 1)
        return [
            *responses[:-1],
            last,
            f"250 FUTURERELEASE {self.sink.future_release} 2099-01-01T00:00:00Z",
        ]

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        with self.sink._lock:
            self.sink.rcpts.append(address)
        local = address.split("@")[0].lower()
        if local.startswith("slow-"):
            await asyncio.sleep(self.sink.slow_seconds)
        if local.startswith("tempfail-"):
            return "451 4.3.0 try again later"
        if local.startswith("reject-"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self.sink._lock:
            self.sink.received.append(
                Received(
                    str(envelope.mail_from),
                    tuple(envelope.mail_options),
                    tuple(envelope.rcpt_tos),
                    content,
                )
            )
        if any(r.lower().startswith("slowdata-") for r in envelope.rcpt_tos):
            await asyncio.sleep(self.sink.slow_seconds)
        return "250 2.0.0 Ok: queued"
