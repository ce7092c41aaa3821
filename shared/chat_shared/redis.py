"""Redis/Valkey connections: the one place that knows the topology.

``CHAT_REDIS_MODE`` picks redis-py's own client for it: ``Redis`` for one server,
``RedisCluster`` for a cluster (it follows MOVED/ASK and slot migrations), or the
primary that Sentinel names (the pool asks the Sentinels again after a failover).
Everything else takes the client it is given and never asks which one it is: every
script and transaction touches keys of one hash tag, so the same commands run on all
three. Keys that one server-side script touches share a hash tag: ``{s3}`` for ingest
shard 3, ``{u<user id>}`` for a user's inbox, sessions and cursors.
"""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from chat_shared.scripts import Replication
from chat_shared.settings import ChatSettings

# Above every blocking read we issue (XREAD/XREADGROUP block at most 5 s); redis-py's
# own default of 5 s would cut those short.
SOCKET_TIMEOUT_SECONDS = 30
CONNECT_TIMEOUT_SECONDS = 5


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {text!r}")
    return host, int(port)


def connect_redis(target: ChatSettings | str, *, max_connections: int = 64) -> Redis:
    """A pooled client for the configured topology (a URL alone means one server).
    Values are bytes; callers decode what they read.

    The cluster client is typed as ``Redis``: it serves the same command API, which is
    all the callers use (no cross-slot command, no MULTI over two tags)."""
    if isinstance(target, str):
        return _single(target, max_connections, {})
    credentials: dict[str, Any] = {
        "username": target.redis_username,
        "password": target.redis_password.get_secret_value() if target.redis_password else None,
    }
    verify: dict[str, Any] = {}
    if target.redis_tls_ca_file is not None:
        verify["ssl_ca_certs"] = str(target.redis_tls_ca_file)
    if target.redis_mode == "single":
        return _single(target.redis_url, max_connections, {**credentials, **verify})
    auth = {**credentials, "ssl": target.redis_tls, **(verify if target.redis_tls else {})}
    timeouts: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_keepalive": True,
    }
    if target.redis_mode == "cluster":
        if not target.redis_nodes:
            raise ValueError("CHAT_REDIS_MODE=cluster needs CHAT_REDIS_NODES")
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(*_address(node)) for node in target.redis_nodes],
            max_connections=max_connections,
            **auth,
            **timeouts,
        )
        return cast(Redis, cluster)
    if not target.redis_sentinels:
        raise ValueError("CHAT_REDIS_MODE=sentinel needs CHAT_REDIS_SENTINELS")
    sentinel = Sentinel(
        [_address(node) for node in target.redis_sentinels],
        sentinel_kwargs={**auth, **timeouts},
        **auth,
        **timeouts,
    )
    return sentinel.master_for(target.redis_master, max_connections=max_connections)


def _single(url: str, max_connections: int, security: dict[str, Any]) -> Redis:
    if not url:
        raise ValueError("CHAT_REDIS_URL is empty: start the embedded Valkey or set a URL")
    if not url.startswith("rediss://"):
        security.pop("ssl_ca_certs", None)  # a plain connection takes no TLS options
    # from_url lets what the URL names win over these.
    options: dict[str, object] = {
        **{key: value for key, value in security.items() if value is not None},
        "max_connections": max_connections,
        "timeout": 20,
        "health_check_interval": 30,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
    }
    if not url.startswith("unix://"):
        options["socket_keepalive"] = True
    # A burst waits for a free connection instead of failing.
    pool = BlockingConnectionPool.from_url(url, **options)
    return Redis.from_pool(pool)


def replication_of(settings: ChatSettings) -> Replication | None:
    """What a send waits for before it is acknowledged (``CHAT_REDIS_MIN_REPLICAS``)."""
    if not settings.redis_min_replicas:
        return None
    return Replication(settings.redis_min_replicas, settings.redis_wait_timeout_ms)
