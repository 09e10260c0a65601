"""A real Redis Cluster on loopback: three masters, no replicas, all 16384 slots covered.

Each node is a redis-server started with ``--cluster-enabled yes`` and a nodes.conf of its own
in its own directory; ``redis-cli --cluster create`` then joins them and shares the slots out.
Three masters is the least ``redis-cli --cluster create`` accepts, and enough that one
account's hash tag lives on one node while the others hold none of its keys.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from dataclasses import dataclass, field

import redis

from tests.servers import RedisServer, free_port, make_data_dir

LOOPBACK = "127.0.0.1"
NODES = 3


@dataclass
class ClusterNodeServer(RedisServer):
    """One cluster-enabled redis-server: a RedisServer with the cluster options."""

    # The cluster bus defaults to port + 10000, which overflows for a high free port.
    bus_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.options = (
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(self.root / "nodes.conf"),
            "--cluster-port",
            str(self.bus_port),
        )

    def client(self) -> redis.Redis:
        """A plain (non-cluster) client of this node alone: what it holds, not what it routes."""
        return redis.Redis(host=LOOPBACK, port=self.port)


@dataclass
class RedisClusterSet:
    nodes: list[ClusterNodeServer] = field(default_factory=list)

    def start(self) -> None:
        self.nodes = [ClusterNodeServer(make_data_dir("jg-rcluster-")) for _ in range(NODES)]
        try:
            for node in self.nodes:
                node.start()
            binary = shutil.which("redis-cli") or "/usr/bin/redis-cli"
            subprocess.run(
                [
                    binary,
                    "--cluster",
                    "create",
                    *(f"{LOOPBACK}:{node.port}" for node in self.nodes),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            self._wait_until_ok()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
            shutil.rmtree(node.root, ignore_errors=True)

    @property
    def url(self) -> str:
        """The gateway's URL for it: every node as a startup node."""
        hosts = ",".join(f"{LOOPBACK}:{node.port}" for node in self.nodes)
        return f"redis+cluster://{hosts}"

    def owner(self, key: str) -> ClusterNodeServer:
        """The node serving ``key``'s slot, by asking the nodes (CLUSTER KEYSLOT, SLOTS)."""
        with self.nodes[0].client() as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            ranges = client.execute_command("CLUSTER SLOTS")
        for start, end, master, *_ in ranges:
            if start <= slot <= end:
                port = int(master[1])
                return next(node for node in self.nodes if node.port == port)
        raise AssertionError(f"slot {slot} has no owner")

    def flush(self) -> None:
        for node in self.nodes:
            with node.client() as client:
                client.flushall()

    def _wait_until_ok(self, timeout: float = 30.0) -> None:
        """Until every node says cluster_state:ok (slots assigned and the gossip settled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for node in self.nodes:
                with node.client() as client:
                    states.append(client.cluster("INFO")["cluster_state"])  # parsed to a dict
            if all(state == "ok" for state in states):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
