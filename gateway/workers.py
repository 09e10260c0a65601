"""Several worker processes on one replica: ``GATEWAY_WORKERS``.

One Python process serves requests on one core. On a machine with more cores an operator can
run more replicas, or several workers in one: the parent binds the sockets, forks the
workers, and each runs the whole gateway (its own event loop, upstream pool, Redis clients
and push hub), exactly as separate replicas do: what must be shared between them (the
``maxConcurrentRequests`` count, the index and its leases, push fan-out, the delayed sender's
schedule, login failure counts) already lives in Redis.

- The API port is one socket bound before the fork and accepted on by every worker; the
  kernel gives each connection to whichever worker accepts it first (a busy worker accepts
  fewer).
- Metrics are per process: worker ``i`` serves its own ``/metrics`` on
  ``GATEWAY_METRICS_PORT + i`` (Prometheus scrapes each port, as the Helm chart's
  ServiceMonitor does); there is no aggregation across workers.
- SIGTERM or SIGINT to the parent goes to every worker, each drains as a single process does
  (push streams, in-flight requests, LOGOUTs), and the parent exits when all have.
- A worker that dies otherwise is started again after ``RESTART_DELAY_SECONDS``; when workers
  keep dying within ``QUICK_DEATH_SECONDS`` of their start (``QUICK_DEATHS_ALLOWED`` times in
  a row: a configuration or dependency failure), the parent stops the others and exits with
  status 1, so the container restarts and its crash loop shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 1.0
QUICK_DEATH_SECONDS = 10.0
QUICK_DEATHS_ALLOWED = 5

# Runs worker ``index`` in the forked child, on its sockets; returns when it has shut down.
Serve = Callable[[int, list[socket.socket]], None]


class Supervisor:
    """Forks ``count`` workers, each serving the shared ``api`` socket and its own entry of
    ``metrics`` (one per worker, or none), and looks after them until they stop."""

    def __init__(
        self,
        count: int,
        api: socket.socket,
        metrics: list[socket.socket],
        serve: Serve,
    ) -> None:
        self._count = count
        self._api = api
        self._metrics = metrics
        self._serve = serve
        self._workers: dict[int, tuple[int, float]] = {}  # pid -> (index, started)
        self._stopping = False
        self._quick_deaths = 0

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; the exit status for the parent."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(self._count):
                self._start(index)
            return self._watch()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True
        self._signal_all(signum)

    def _signal_all(self, signum: int) -> None:
        for pid in self._workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _start(self, index: int) -> None:
        sockets = [self._api, *self._metrics[index : index + 1]]
        pid = os.fork()
        if pid == 0:  # the worker
            status = 0
            try:
                # Its own process group: a Ctrl-C in a terminal reaches the parent alone, which
                # passes it on once (a second SIGINT would make uvicorn cut its requests).
                os.setpgid(0, 0)
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own
                for other, sock in enumerate(self._metrics):
                    if other != index:
                        sock.close()
                self._serve(index, sockets)
            except BaseException:
                log.exception("worker %d failed", index)
                status = 1
            finally:
                logging.shutdown()
                os._exit(status)
        self._workers[pid] = (index, time.monotonic())
        log.info("worker %d started (pid %d)", index, pid)

    def _watch(self) -> int:
        status = 0
        while self._workers:
            pid, code = os.wait()  # PEP 475: retried after the signal handler ran
            index, started = self._workers.pop(pid, (None, 0.0))
            if index is None:
                continue
            if self._stopping:
                continue
            quick = time.monotonic() - started < QUICK_DEATH_SECONDS
            self._quick_deaths = self._quick_deaths + 1 if quick else 0
            log.warning("worker %d (pid %d) ended unexpectedly (wait status %d)", index, pid, code)
            if self._quick_deaths >= QUICK_DEATHS_ALLOWED:
                log.error("workers keep dying right after start: stopping the others")
                self._stopping = True
                status = 1
                self._signal_all(signal.SIGTERM)
                continue
            time.sleep(RESTART_DELAY_SECONDS)
            if not self._stopping:
                self._start(index)
        return status
