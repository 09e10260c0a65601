"""Where the gateway listens: the API and metrics sockets, for IPv4, IPv6 and both."""

from __future__ import annotations

import socket

import pytest

from gateway.config import Settings
from gateway.server import listeners
from tests.servers import free_port


def settings(host: str, metrics_port: int) -> Settings:
    return Settings(
        imap_url="imap://127.0.0.1:143",
        redis_url="redis://127.0.0.1:6379/0",
        host=host,
        port=free_port(),
        metrics_port=metrics_port,
        public_url="http://gateway.example",
    )


def reachable(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=2).close()
    except OSError:
        return False
    return True


def test_both_ports_listen_and_metrics_can_be_turned_off() -> None:
    config = settings("127.0.0.1", free_port())
    sockets = listeners(config)
    try:
        assert [s.getsockname()[1] for s in sockets] == [config.port, config.metrics_port]
    finally:
        for sock in sockets:
            sock.close()
    config = settings("127.0.0.1", 0)
    sockets = listeners(config)
    try:
        assert [s.getsockname()[1] for s in sockets] == [config.port]
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.skipif(
    not (socket.has_ipv6 and socket.has_dualstack_ipv6()), reason="no dual-stack IPv6 here"
)
def test_every_address_means_ipv4_and_ipv6() -> None:
    config = settings("::", 0)
    [sock] = listeners(config)
    try:
        assert reachable("127.0.0.1", config.port)
        assert reachable("::1", config.port)
    finally:
        sock.close()


def test_a_port_in_use_is_an_error_and_nothing_stays_bound() -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        config = settings("127.0.0.1", taken.getsockname()[1])
        with pytest.raises(OSError):
            listeners(config)
        # The API socket bound before the failure was closed again.
        assert not reachable("127.0.0.1", config.port)
    finally:
        taken.close()
