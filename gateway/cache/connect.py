"""Which Redis the gateway talks to: one server, the master a set of Sentinels names, or a
Redis Cluster.

``GATEWAY_REDIS_URL`` is redis-py's own URL (``redis://``, ``rediss://``, ``unix://``) for one
server, or, for Redis Sentinel, ``redis+sentinel://[[user]:password@]host[:port][,host[:port]]
.../<master name>[/<db>]`` (``rediss+sentinel://`` for TLS), or, for Redis Cluster,
``redis+cluster://[[user]:password@]host[:port][,host[:port]...][/]`` (``rediss+cluster://``
for TLS). redis-py has no URL form for Sentinel nor for several cluster nodes, so these are
parsed here. The credentials and TLS of a Sentinel URL are the master's; the Sentinels are
asked with GATEWAY_REDIS_SENTINEL_PASSWORD if set, else without a password (Sentinels are often
configured without one even where the data nodes need one).

A cluster URL names startup nodes: any reachable one tells the client the whole slot map
(CLUSTER SLOTS), so listing several only matters while some are down. Every node is asked with
the URL's credentials and TLS. A cluster has database 0 alone
(https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/: "Redis Cluster
does not support multiple databases"), so the URL takes none.

With Sentinel, every new connection asks a Sentinel where the master is, and a connection to a
master that has been demoted is dropped as soon as it answers READONLY: after a failover one
round trip fails (the request gets a 503 or serverUnavailable) and the next goes to the new
master.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from gateway.cache.timed import RedisObserver, TimedRedis, TimedRedisCluster

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # -> TLS
SENTINEL_PORT = 26379
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # -> TLS
CLUSTER_PORT = 6379
# Redis notices a dead connection at the next command; a health check PING before reusing one
# idle this long finds it first.
HEALTH_CHECK_SECONDS = 30


class BadRedisUrl(ValueError):
    """The URL cannot name a Redis; the text never repeats the password."""


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None = field(repr=False)
    tls: bool


@dataclass(frozen=True)
class ClusterUrl:
    nodes: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None = field(repr=False)
    tls: bool


def split_url(url: str) -> SplitResult:
    """``urlsplit``, whose own errors quote the URL's host part, password included."""
    try:
        return urlsplit(url)
    except ValueError:
        raise ValueError("is not a valid URL") from None


def is_sentinel_url(url: str) -> bool:
    return split_url(url).scheme in SENTINEL_SCHEMES


def is_cluster_url(url: str) -> bool:
    return split_url(url).scheme in CLUSTER_SCHEMES


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Split a ``redis+sentinel://`` URL; :class:`BadRedisUrl` says what is wrong."""
    parts = split_url(url)
    if parts.scheme not in SENTINEL_SCHEMES:
        raise BadRedisUrl("a Sentinel URL starts with redis+sentinel:// or rediss+sentinel://")
    username, password, hosts = _netloc(parts, "Sentinel", SENTINEL_PORT)
    path = [piece for piece in parts.path.split("/") if piece]
    if not path or len(path) > 2:
        raise BadRedisUrl("a Sentinel URL names the master: redis+sentinel://hosts/<master>[/db]")
    if len(path) == 2 and not path[1].isdigit():
        raise BadRedisUrl("the database after the master name must be a number")
    if parts.query or parts.fragment:
        raise BadRedisUrl("a Sentinel URL takes no query or fragment")
    return SentinelUrl(
        sentinels=hosts,
        master=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=username,
        password=password,
        tls=SENTINEL_SCHEMES[parts.scheme],
    )


def parse_cluster_url(url: str) -> ClusterUrl:
    """Split a ``redis+cluster://`` URL; :class:`BadRedisUrl` says what is wrong."""
    parts = split_url(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        raise BadRedisUrl("a cluster URL starts with redis+cluster:// or rediss+cluster://")
    username, password, hosts = _netloc(parts, "cluster node", CLUSTER_PORT)
    if parts.path.strip("/"):
        raise BadRedisUrl("a Redis Cluster has only database 0: the URL ends after the nodes")
    if parts.query or parts.fragment:
        raise BadRedisUrl("a cluster URL takes no query or fragment")
    return ClusterUrl(
        nodes=hosts,
        username=username,
        password=password,
        tls=CLUSTER_SCHEMES[parts.scheme],
    )


def _netloc(
    parts: SplitResult, role: str, default_port: int
) -> tuple[str | None, str | None, tuple[tuple[str, int], ...]]:
    """(username, password, hosts) of a URL naming several ``host:port`` pairs, which
    urlsplit cannot take apart; the userinfo ends at the last "@"."""
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    return (
        unquote(username) or None,
        unquote(password) if userinfo and password else None,
        tuple(_host_port(item, role, default_port) for item in hosts.split(",")),
    )


def _host_port(item: str, role: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise BadRedisUrl(f"every {role} needs a host")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise BadRedisUrl(f"a {role}'s port must be a number from 1 to 65535")
    return host, int(port) if port else default_port


# Connections one client keeps to one server. Past it a command waits for a free connection
# (up to the command timeout) rather than failing at once, which redis-py's default pool does: a
# burst of requests (push clients reconnecting after a replica's drain) would otherwise get 503s.
MAX_CONNECTIONS = 100


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel master's pool that waits for a free connection like the single server's."""


def redis_client(
    url: str,
    *,
    timeout: float,
    observer: RedisObserver | None = None,
    sentinel_password: str | None = None,
) -> TimedRedis | TimedRedisCluster:
    """A client of the server ``url`` names, lazily connected: nothing is sent yet."""
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": HEALTH_CHECK_SECONDS,
    }
    client: TimedRedis | TimedRedisCluster
    if is_cluster_url(url):
        client = _cluster_client(parse_cluster_url(url), options)
    elif is_sentinel_url(url):
        client = _sentinel_client(parse_sentinel_url(url), options, sentinel_password)
    else:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=timeout, **options
        )
        single = TimedRedis.from_pool(pool)
        assert isinstance(single, TimedRedis)  # from_pool builds the class it is called on
        client = single
    client.observer = observer
    return client


def _sentinel_client(
    target: SentinelUrl, options: dict[str, Any], sentinel_password: str | None
) -> TimedRedis:
    """A client of the master the Sentinels name, asking them again for each new connection."""
    tls: dict[str, Any] = {"ssl": True} if target.tls else {}
    sentinel = Sentinel(
        list(target.sentinels),
        sentinel_kwargs={**options, **tls, "password": sentinel_password},
        **options,
        **tls,
    )
    client = sentinel.master_for(
        target.master,
        redis_class=TimedRedis,
        connection_pool_class=_BlockingSentinelPool,
        max_connections=MAX_CONNECTIONS,
        timeout=options["socket_timeout"],
        db=target.db,
        username=target.username,
        password=target.password,
    )
    assert isinstance(client, TimedRedis)
    client.companions = tuple(sentinel.sentinels)
    return client


def _cluster_client(target: ClusterUrl, options: dict[str, Any]) -> TimedRedisCluster:
    """A cluster client; it learns the slot map from the first startup node that answers.

    A command answered MOVED or ASK (a slot that moved in a resharding or failover) is resent
    to the node named and the slot map refreshed, by redis-py itself.
    """
    return TimedRedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=target.username,
        password=target.password,
        ssl=target.tls,
        **options,
    )
