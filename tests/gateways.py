"""Real gateway processes: ``python -m gateway serve`` on free loopback ports, configured only by
GATEWAY_* variables as in its container, several of them on one Redis (replicas).

For what only separate processes show: announcements crossing replicas, a watcher lease taken
over after ``kill -9``, streams ended by SIGTERM before the process exits. Each process logs to
a file of its own (``log_text()``); a test that starts one must leave it stopped
(:func:`running_gateways` does so).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

from tests.servers import free_ports

# Generous bounds for a loaded machine; nothing here measures time.
START_SECONDS = 60.0
EXIT_SECONDS = 30.0


def _variable(name: str) -> str:
    """``push_max_per_account`` -> ``GATEWAY_PUSH_MAX_PER_ACCOUNT`` (GATEWAY_ names kept)."""
    upper = name.upper()
    return upper if upper.startswith("GATEWAY_") else f"GATEWAY_{upper}"


class GatewayProcess:
    """One gateway process; :meth:`start` runs it, :meth:`sigterm` or :meth:`kill` ends it."""

    def __init__(self, env: dict[str, str], log: Path, *, nofile: int | None = None) -> None:
        self.port, self.metrics_port = free_ports(2)
        self.env = {
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.port),
            "GATEWAY_METRICS_PORT": str(self.metrics_port),
            "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
            "GATEWAY_LOG_LEVEL": "info",
            # Tests change mail with a plain IMAP client and look at once.
            "GATEWAY_SYNC_INTERVAL_SECONDS": "0",
            # Requests wait for their catch-up however loaded the machine.
            "GATEWAY_SYNC_WAIT_SECONDS": "600",
            **env,
        }
        self.log = log
        self.nofile = nofile
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self) -> GatewayProcess:
        """Run the process and wait until it serves (``/healthz`` answers 200)."""
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve"],
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=self._limits() if self.nofile else None,
            )
        await self._wait_for("/healthz")
        return self

    async def wait_ready(self) -> None:
        """Wait until ``/readyz`` answers 200 (Redis and the upstream reachable)."""
        await self._wait_for("/readyz")

    def sigterm(self) -> None:
        """Ask for the graceful shutdown a container stop sends."""
        assert self.process is not None, "not started"
        self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """``kill -9``: the process ends at once, nothing of it runs any more."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    async def wait_exit(self, timeout: float = EXIT_SECONDS) -> int:
        """The exit status once the process ended (-15 after a complete SIGTERM shutdown)."""
        assert self.process is not None, "not started"
        return await asyncio.to_thread(self.process.wait, timeout)

    async def exits_gracefully(self) -> bool:
        """Whether the process ended after a complete shutdown: uvicorn re-raises the SIGTERM
        it caught once its shutdown is done, and the log says the shutdown ran."""
        code = await self.wait_exit()
        return code == -signal.SIGTERM and "Application shutdown complete" in self.log_text()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def metrics(self) -> str:
        """The Prometheus exposition of the process."""
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(self.metrics_url)
            response.raise_for_status()
            return response.text

    def _limits(self) -> Callable[[], None]:
        nofile = self.nofile
        assert nofile is not None

        def raise_nofile() -> None:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            wanted = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

        return raise_nofile

    async def _wait_for(self, path: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_SECONDS
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as http:
            while loop.time() < deadline:
                if not self.running:
                    raise RuntimeError(f"gateway exited: {self.log_text()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(path)).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"gateway did not answer {path}: {self.log_text()}")


def gateways(
    n: int,
    *,
    imap_url: str,
    redis_url: str,
    log_dir: Path | None = None,
    nofile: int | None = None,
    **env: str,
) -> list[GatewayProcess]:
    """``n`` replicas of one deployment (not started): the same upstream, Redis and settings
    (``env``: setting names or GATEWAY_ variables), each on ports of its own."""
    directory = log_dir or Path(tempfile.mkdtemp(prefix="jg-gateways-"))
    common = {
        "GATEWAY_IMAP_URL": imap_url,
        "GATEWAY_REDIS_URL": redis_url,
        **{_variable(name): value for name, value in env.items()},
    }
    return [
        GatewayProcess(dict(common), directory / f"gateway-{i}.log", nofile=nofile)
        for i in range(n)
    ]


@contextlib.asynccontextmanager
async def running_gateways(
    n: int, *, imap_url: str, redis_url: str, **env: str
) -> AsyncIterator[list[GatewayProcess]]:
    """:func:`gateways`, started; any still running at the end are killed."""
    processes = gateways(n, imap_url=imap_url, redis_url=redis_url, **env)
    try:
        await asyncio.gather(*(process.start() for process in processes))
        yield processes
    finally:
        for process in processes:
            process.kill()
