"""The push URLs' own DNS resolver: a few threads of their own, never the loop's default
executor.

``loop.getaddrinfo`` runs in the loop's default executor, which IMAP connects
(``asyncio.open_connection``) share; a lookup that times out frees its coroutine but not its
thread, which stays blocked until the system resolver gives up (glibc: timeout x attempts x
search domains). A user who names hosts whose name servers never answer would then hold every
default thread, and other users' upstream logins would queue behind them. So push lookups get
MAX_THREADS threads of their own, and a lookup that finds them all busy (or its account
already at MAX_PER_ACCOUNT lookups) fails at once as "temporarily unavailable" instead of
queueing: a create gets a SetError saying so, a delivery tries again later. A thread counts as
busy until the system call returns, not until the caller stops waiting.

A non-blocking resolver (aiodns over c-ares) would need no threads, but it is not installed
here, and it does not read /etc/hosts and nsswitch as getaddrinfo does (so it would resolve
names differently from the rest of the gateway): the bounded executor keeps one behaviour.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# Threads for push URL lookups in one process. Lookups are rare (a create, a delivery attempt)
# and usually answered from the resolver's cache in milliseconds.
MAX_THREADS = 4
# Lookups one account may have in flight in one process: one account never holds all threads.
MAX_PER_ACCOUNT = 2

AddrInfo = tuple[int, int, int, str, Any]


class ResolverBusy(Exception):
    """No lookup thread (or none of the account's share) is free: try again later."""


class Resolver:
    """The bounded getaddrinfo of push URLs (one per process: :data:`RESOLVER`)."""

    def __init__(self, threads: int = MAX_THREADS, per_account: int = MAX_PER_ACCOUNT) -> None:
        self._threads = threads
        self._per_account = per_account
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="push-dns")
        self._lock = threading.Lock()
        self._busy = 0
        self._accounts: Counter[str] = Counter()

    @property
    def busy(self) -> int:
        """Threads blocked in a lookup now (those whose callers gave up included)."""
        with self._lock:
            return self._busy

    async def getaddrinfo(self, host: str, port: int, account_id: str) -> Sequence[AddrInfo]:
        """``socket.getaddrinfo(host, port, type=SOCK_STREAM)`` in a thread of this resolver;
        ResolverBusy at once when none is free for ``account_id``. Cancelling the caller
        leaves the thread to finish on its own (it stays counted until then)."""
        with self._lock:
            if self._busy >= self._threads:
                raise ResolverBusy("every lookup thread is busy")
            if self._accounts[account_id] >= self._per_account:
                raise ResolverBusy("this account's lookups are all in flight")
            self._busy += 1
            self._accounts[account_id] += 1
        try:
            future = asyncio.get_running_loop().run_in_executor(
                self._executor, self._lookup, host, port, account_id
            )
        except BaseException:
            self._release(account_id)
            raise
        # The shield keeps the executor's future from being cancelled with the caller, whose
        # cancellation would otherwise leave an exception nobody retrieves.
        future.add_done_callback(_retrieve)
        return await asyncio.shield(future)

    def _lookup(self, host: str, port: int, account_id: str) -> Sequence[AddrInfo]:
        try:
            return system_getaddrinfo(host, port, type=socket.SOCK_STREAM)
        finally:
            self._release(account_id)

    def _release(self, account_id: str) -> None:
        with self._lock:
            self._busy -= 1
            self._accounts[account_id] -= 1
            if self._accounts[account_id] <= 0:
                del self._accounts[account_id]


def _retrieve(future: asyncio.Future[Sequence[AddrInfo]]) -> None:
    if not future.cancelled():
        future.exception()


# The system call the threads make; a module name, so tests can put a resolver of their own
# in its place (DNS is outbound, like HTTP).
system_getaddrinfo = socket.getaddrinfo

RESOLVER = Resolver()
