"""The real servers a benchmark runs against, each in a throw-away directory."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

from tests.cyrus import Cyrus
from tests.servers import Dovecot, RedisServer, free_port, make_data_dir
from tests.smtp_servers import Postfix


@contextlib.contextmanager
def local_dovecot(*, sending: bool = False) -> Iterator[Dovecot]:
    """A started Dovecot, stopped and its mail removed when the block ends; ``sending``: with
    the LMTP and SASL listeners a Postfix delivers and authenticates through."""
    ports = {"lmtp_port": free_port(), "sasl_port": free_port()} if sending else {}
    dovecot = Dovecot(make_data_dir("jg-bench-dovecot-"), **ports)
    dovecot.start()
    try:
        yield dovecot
    finally:
        dovecot.stop()
        shutil.rmtree(dovecot.root, ignore_errors=True)


@contextlib.contextmanager
def local_cyrus() -> Iterator[Cyrus]:
    """A started Cyrus IMAP, stopped and removed when the block ends."""
    cyrus = Cyrus(make_data_dir("jg-bench-cyrus-"))
    cyrus.start()
    try:
        yield cyrus
    finally:
        cyrus.stop()
        shutil.rmtree(cyrus.root, ignore_errors=True)


@contextlib.contextmanager
def local_redis() -> Iterator[RedisServer]:
    redis = RedisServer(make_data_dir("jg-bench-redis-"))
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()
        shutil.rmtree(redis.root, ignore_errors=True)


@contextlib.contextmanager
def local_servers() -> Iterator[tuple[Dovecot, RedisServer]]:
    """A started Dovecot and redis-server, both stopped and removed when the block ends."""
    with local_dovecot() as dovecot, local_redis() as redis:
        yield dovecot, redis


@contextlib.contextmanager
def local_sending_servers() -> Iterator[tuple[Dovecot, RedisServer, Postfix]]:
    """:func:`local_servers` and a Postfix whose submission port authenticates against the
    Dovecot and delivers example.com into it over LMTP (other domains are discarded)."""
    with local_dovecot(sending=True) as dovecot, local_redis() as redis:
        assert dovecot.sasl_port is not None and dovecot.lmtp_port is not None
        postfix = Postfix(
            make_data_dir("jg-bench-postfix-"),
            sasl_port=dovecot.sasl_port,
            lmtp_port=dovecot.lmtp_port,
        )
        postfix.start()
        try:
            yield dovecot, redis, postfix
        finally:
            postfix.stop()
            shutil.rmtree(postfix.root, ignore_errors=True)
