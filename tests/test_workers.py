"""GATEWAY_WORKERS on real processes: two workers share the API port, each serves its own
metrics port, a worker that dies is started again while the other answers, and SIGTERM to the
parent stops every worker with a graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.servers import Dovecot, free_port

PATIENCE = 30.0


def children(parent: int) -> set[int]:
    """Live processes whose parent is ``parent`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == parent and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def free_pair() -> int:
    """A free port whose next port is free too (the second worker's metrics port)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two free consecutive ports")


async def until(predicate: object) -> None:
    async with asyncio.timeout(PATIENCE):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def answers(url: str, auth: httpx.BasicAuth | None = None) -> bool:
    async with httpx.AsyncClient(auth=auth) as http:
        try:
            return (await http.get(url)).status_code == 200
        except httpx.TransportError:
            return False


async def until_answers(*urls: str) -> None:
    async with asyncio.timeout(PATIENCE):
        for url in urls:
            while not await answers(url):
                await asyncio.sleep(0.05)


async def test_two_workers_serve_restart_and_stop_on_sigterm(
    dovecot: Dovecot, redis_url: str, tmp_path: Path
) -> None:
    port, metrics = free_port(), free_pair()
    env = {
        **os.environ,
        "GATEWAY_IMAP_URL": dovecot.url,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_METRICS_PORT": str(metrics),
        "GATEWAY_LOG_LEVEL": "info",
        "GATEWAY_WORKERS": "2",
    }
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    api = f"http://127.0.0.1:{port}"
    scrapes = [f"http://127.0.0.1:{metrics + i}/metrics" for i in range(2)]
    auth = httpx.BasicAuth("alice", dovecot.users["alice"])
    try:
        await until(lambda: len(children(process.pid)) == 2)
        await until_answers(f"{api}/healthz", *scrapes)  # each worker its own metrics port
        first, second = sorted(children(process.pid))
        os.kill(first, signal.SIGKILL)  # a worker dies
        for _ in range(10):  # the other serves meanwhile, on new connections too
            assert await answers(f"{api}/jmap/session", auth)
        await until(lambda: len(children(process.pid) - {second}) == 1)  # started again
        assert second in children(process.pid)
        await until_answers(*scrapes)
        workers = children(process.pid)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, PATIENCE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    # Each worker ran its own graceful shutdown (the one killed did not).
    assert log.read_text().count("Application shutdown complete") == 2
