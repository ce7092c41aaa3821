"""Redis/Valkey connections and key naming rules.

Keys that one server-side script touches share a hash tag, so every script stays in
one slot under Redis Cluster: ``{s3}`` for ingest shard 3, ``{u<user id>}`` for a
user's inbox, sessions and cursors.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis


def connect_redis(url: str, *, max_connections: int = 64) -> Redis:
    """A pooled client. Values are bytes; callers decode what they read."""
    if not url:
        raise ValueError("CHAT_REDIS_URL is empty: start the embedded Valkey or set a URL")
    options: dict[str, object] = {
        "max_connections": max_connections,
        "timeout": 20,
        "health_check_interval": 30,
        # Above every blocking read we issue (XREAD/XREADGROUP block at most 5 s);
        # redis-py's own default of 5 s would cut those short.
        "socket_timeout": 30,
        "socket_connect_timeout": 5,
    }
    if not url.startswith("unix://"):
        options["socket_keepalive"] = True
    # A burst waits for a free connection instead of failing.
    pool = BlockingConnectionPool.from_url(url, **options)
    return Redis.from_pool(pool)


async def redis_ready(redis: Redis) -> None:
    await redis.ping()
