"""A real Redis Sentinel set on loopback: a master, a replica and one Sentinel (quorum 1).

Sentinel is redis-server started with ``--sentinel`` on a config file it may rewrite (it
records what it learns there). One Sentinel is enough to test discovery and a forced failover
(``SENTINEL FAILOVER`` needs no agreement); production runs three or more.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.servers import RedisServer, free_port, make_data_dir, wait_for_port

LOOPBACK = "127.0.0.1"
MASTER_NAME = "jg-master"


@dataclass
class SentinelSet:
    root: Path
    master: RedisServer = field(init=False)
    replica: RedisServer = field(init=False)
    sentinel_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.master = RedisServer(make_data_dir("jg-redis-master-"))
        self.replica = RedisServer(
            make_data_dir("jg-redis-replica-"),
            options=("--replicaof", LOOPBACK, str(self.master.port)),
        )

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        config = self.root / "sentinel.conf"
        config.write_text(
            f"port {self.sentinel_port}\n"
            f"bind {LOOPBACK}\n"
            f"dir {self.root}\n"
            f"sentinel monitor {MASTER_NAME} {LOOPBACK} {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
        )
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [binary, str(config), "--sentinel"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.sentinel_port)
        self._wait(lambda: self._replicas_known() > 0, "the Sentinel to learn of the replica")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
        self.replica.stop()
        self.master.stop()

    @property
    def url(self) -> str:
        return f"redis+sentinel://{LOOPBACK}:{self.sentinel_port}/{MASTER_NAME}/0"

    def master_port(self) -> int:
        with redis.Redis(host=LOOPBACK, port=self.sentinel_port) as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def failover(self) -> int:
        """Make the replica the master, once it holds every write; the new master's port."""
        with redis.Redis(host=LOOPBACK, port=self.master.port) as master:
            master.execute_command("WAIT", 1, 5000)
        with redis.Redis(host=LOOPBACK, port=self.sentinel_port) as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        self._wait(lambda: self.master_port() == self.replica.port, "the failover")
        self._wait(lambda: self._role(self.replica) == "master", "the replica to take writes")
        self._wait(lambda: self._role(self.master) == "slave", "the old master to step down")
        return self.replica.port

    def _replicas_known(self) -> int:
        with redis.Redis(host=LOOPBACK, port=self.sentinel_port) as sentinel:
            return len(sentinel.sentinel_slaves(MASTER_NAME))

    @staticmethod
    def _role(server: RedisServer) -> str:
        with redis.Redis(host=LOOPBACK, port=server.port) as client:
            return str(client.info("replication")["role"])

    @staticmethod
    def _wait(done: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return
            time.sleep(0.1)
        raise RuntimeError(f"timed out waiting for {what}")
