"""The object the gateway holds to send mail: sessions opened, reused and closed for it.

``send`` runs one transaction (see :mod:`gateway.smtp.transaction`) with the sender's
authorization; ``probe`` asks a server's extensions without logging in.
"""

from __future__ import annotations

import asyncio
import time

from gateway.smtp import transaction
from gateway.smtp.connection import (
    Authorization,
    Session,
    SmtpEndpoint,
    Timeouts,
    TlsMode,
    open_session,
)
from gateway.smtp.envelope import Envelope
from gateway.smtp.extensions import Extensions
from gateway.smtp.observer import SmtpObserver
from gateway.smtp.outcome import Outcome, Phase, SmtpFailure
from gateway.smtp.pool import SessionPool

__all__ = ["Authorization", "SmtpEndpoint", "SmtpSender", "Timeouts", "TlsMode"]


class SmtpSender:
    """Sends messages through one submission server, reusing sessions per authorization."""

    def __init__(
        self,
        endpoint: SmtpEndpoint,
        observer: SmtpObserver | None = None,
        *,
        pool: SessionPool | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._observer = observer
        self._pool = pool or SessionPool()

    async def probe(self) -> Extensions:
        """EHLO only (after STARTTLS when configured), no AUTH: what the server offers."""
        session = await open_session(self.endpoint, None, self._observer)
        try:
            return session.extensions
        finally:
            await session.quit()

    async def send(self, auth: Authorization, envelope: Envelope, message: bytes) -> Outcome:
        """One transaction; raises :class:`SmtpFailure` (or its subclasses) when nothing was
        accepted or it is unknown whether it was. Never retries: the caller decides, knowing
        :attr:`SmtpFailure.transient` and :attr:`SmtpFailure.ambiguous`."""
        key = auth.pool_key
        started = time.monotonic()
        async with self._pool.slot(key):
            session = await self._session(auth)
            # After a reply the server waits for a command: QUIT. Otherwise (a cut, a timeout,
            # a cancelled send, perhaps half way through the content, where QUIT would be
            # read as content) the connection is only closed.
            ending: str = "close"
            try:
                outcome = await transaction.run(session, envelope, message)
                ending = "keep"
            except SmtpFailure as failure:
                ending = "quit" if failure.reply is not None else "close"
                self._transaction(_failure_outcome(failure), started)
                raise
            finally:
                if ending == "keep":
                    await _close_all(self._pool.give(key, session))
                elif ending == "quit":
                    await session.quit()
                else:
                    session.smtp.close()
        self._transaction("partial" if outcome.refused else "sent", started)
        return outcome

    async def _session(self, auth: Authorization) -> Session:
        """An idle session of this authorization reset for a new transaction, or a new one."""
        session, stale = self._pool.take(auth.pool_key)
        await _close_all(stale)
        if session is not None:
            try:
                reply = await session.command(
                    Phase.MAIL, "RSET", b"RSET", timeout=self.endpoint.timeouts.command
                )
                if reply.code == 250:
                    return session
            except SmtpFailure:
                pass
            # Nothing was sent on it yet: a new session is as good.
            await session.quit()
        return await open_session(self.endpoint, auth, self._observer)

    def _transaction(self, outcome: str, started: float) -> None:
        if self._observer is not None:
            self._observer.smtp_transaction(outcome, time.monotonic() - started)

    @property
    def idle_sessions(self) -> int:
        return self._pool.idle

    async def close(self) -> None:
        await _close_all(self._pool.drain())


def _failure_outcome(failure: SmtpFailure) -> str:
    if failure.ambiguous:
        return "ambiguous"
    return "transient" if failure.transient else "refused"


async def _close_all(sessions: list[Session]) -> None:
    if sessions:
        await asyncio.gather(*(s.quit() for s in sessions), return_exceptions=True)
