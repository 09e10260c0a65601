"""The real servers a benchmark runs against, each in a throw-away directory."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

from tests.servers import Dovecot, RedisServer, make_data_dir


@contextlib.contextmanager
def local_dovecot() -> Iterator[Dovecot]:
    """A started Dovecot, stopped and its mail removed when the block ends."""
    dovecot = Dovecot(make_data_dir("jg-bench-dovecot-"))
    dovecot.start()
    try:
        yield dovecot
    finally:
        dovecot.stop()
        shutil.rmtree(dovecot.root, ignore_errors=True)


@contextlib.contextmanager
def local_servers() -> Iterator[tuple[Dovecot, RedisServer]]:
    """A started Dovecot and redis-server, both stopped and removed when the block ends."""
    with local_dovecot() as dovecot:
        redis = RedisServer(make_data_dir("jg-bench-redis-"))
        redis.start()
        try:
            yield dovecot, redis
        finally:
            redis.stop()
            shutil.rmtree(redis.root, ignore_errors=True)
