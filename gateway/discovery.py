"""The Session's capability objects, rebuilt when a fact learnt from an upstream changes.

RFC 8621 1.3.2's ``submissionExtensions`` is what the submission server says to EHLO. It is
asked once at start-up, with a short timeout, and kept in Redis so a replica starting while
the SMTP server is down shows the last answer anyone got. With neither, the gateway starts
with {} and asks again in the background until it gets an answer; the Session (and so its
state, RFC 8620 2) then changes, which tells clients to fetch it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import orjson

from gateway.cache.store import STORE_UNAVAILABLE, Store
from gateway.config import Settings
from gateway.jmap.session import PersonalSession
from gateway.smtp.extensions import Extensions
from gateway.smtp.outcome import SmtpFailure
from gateway.smtp.sender import SmtpSender
from gateway.translators.spec import Catalog, Discovered, Spec, collect

log = logging.getLogger(__name__)

# The Redis name of the EHLO answer (gateway.cache.keys.discovered).
SMTP_EXTENSIONS = "smtp-extensions"
# Seconds the start-up probe may take before the gateway starts without its answer.
PROBE_SECONDS = 5.0
# Seconds between background probes while the SMTP server does not answer (doubling).
RETRY_FIRST = 1.0
RETRY_MOST = 60.0
# Redis down, or a kept value that is not what as_kept() wrote.
_UNREADABLE: tuple[type[Exception], ...] = (*STORE_UNAVAILABLE, ValueError, TypeError)


class SessionSource:
    """The current :class:`Catalog` and :class:`PersonalSession`, and what they were built on."""

    def __init__(self, specs: Sequence[Spec], settings: Settings, delayed_send: bool) -> None:
        self._specs = tuple(specs)
        self._settings = settings
        self.discovered = Discovered(None, delayed_send)
        self.catalog, self.session = self._build()

    def _build(self) -> tuple[Catalog, PersonalSession]:
        catalog = collect(self._specs, self._settings, self.discovered)
        session = PersonalSession(
            catalog.capabilities, catalog.account_capabilities, self._settings.base_url
        )
        return catalog, session

    def learn(self, extensions: Extensions) -> bool:
        """Rebuild with the server's extensions; False when they are what was known."""
        if extensions == self.discovered.smtp_extensions:
            return False
        self.discovered = Discovered(extensions, self.discovered.delayed_send)
        self.catalog, self.session = self._build()
        return True


class Discovery:
    """Asks the submission server's EHLO, keeps the answer in Redis, and tells ``source``."""

    def __init__(self, sender: SmtpSender, store: Store, source: SessionSource) -> None:
        self._sender = sender
        self._store = store
        self._source = source
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """One probe; else the last answer kept in Redis; and until a probe answers, more in
        the background."""
        if await self._probe(PROBE_SECONDS):
            return
        kept = await self._kept()
        if kept is not None:
            self._source.learn(kept)
        self._task = asyncio.create_task(self._retry(), name="smtp-discovery")

    async def _probe(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                extensions = await self._sender.probe()
        except (SmtpFailure, TimeoutError) as exc:
            log.warning("The SMTP server did not answer EHLO (%s); will ask again", exc)
            return False
        if self._source.learn(extensions):
            log.info("SMTP extensions: %s", " ".join(sorted(extensions.keywords)))
        try:
            await self._store.remember(SMTP_EXTENSIONS, orjson.dumps(extensions.as_kept()).decode())
        except STORE_UNAVAILABLE as exc:
            log.warning("Could not keep the SMTP extensions in Redis: %s", exc)
        return True

    async def _kept(self) -> Extensions | None:
        try:
            value = await self._store.discovered(SMTP_EXTENSIONS)
            return Extensions.from_kept(orjson.loads(value)) if value else None
        except _UNREADABLE as exc:
            log.warning("No SMTP extensions from Redis: %s", exc)
            return None

    async def _retry(self) -> None:
        wait = RETRY_FIRST
        while True:
            await asyncio.sleep(wait)
            if await self._probe(self._sender.endpoint.timeouts.connect + PROBE_SECONDS):
                return
            wait = min(wait * 2, RETRY_MOST)

    @property
    def waiting(self) -> bool:
        """Whether background probes still run (no answer yet)."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
