"""Fixtures every suite shares: a real Valkey server and a Redis client on it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from chat_shared.embedded_redis import EmbeddedValkey
from chat_shared.redis import connect_redis
from tests.support.tokens import TokenMinter


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    """One real Valkey server (AOF on) for the whole run; tests flush it between them."""
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(valkey: EmbeddedValkey) -> str:
    return valkey.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = connect_redis(redis_url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def minter() -> TokenMinter:
    return TokenMinter()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def cassandra_hosts() -> list[str]:
    value = os.environ.get("CHAT_CASSANDRA_HOSTS", "").strip()
    return [h.strip() for h in value.strip("[]").replace('"', "").split(",") if h.strip()]


requires_cassandra = pytest.mark.skipif(
    not cassandra_hosts(),
    reason="Cassandra/ScyllaDB contract tests skipped: set CHAT_CASSANDRA_HOSTS to run them",
)
