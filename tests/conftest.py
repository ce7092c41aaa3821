"""Fixtures every suite shares: a real Valkey server, a Redis client on it, and a real
Cassandra node for the tests that ask for one."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from chat_shared.cassandra_node import CassandraNode, CassandraUnavailable
from chat_shared.embedded_redis import EmbeddedValkey
from chat_shared.redis import connect_redis
from chat_shared.redis_topologies import LocalCluster
from chat_shared.settings import ChatSettings
from tests.support.tokens import TokenMinter


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    """One real Valkey server (AOF on) for the whole run; tests flush it between them."""
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A three-primary Valkey Cluster for the run, started on first use."""
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_topology() -> str:
    """Which Redis the ``redis`` fixtures give: a module that proves itself on a
    cluster too overrides this with ``params=["single", "cluster"]``."""
    return "single"


@pytest.fixture
def redis_url(valkey: EmbeddedValkey) -> str:
    return valkey.url


@pytest.fixture
def redis_settings(request: pytest.FixtureRequest, redis_topology: str) -> dict[str, object]:
    """The settings fields that point a service at the topology under test."""
    if redis_topology == "cluster":
        cluster: LocalCluster = request.getfixturevalue("valkey_cluster")
        return {"redis_mode": "cluster", "redis_nodes": cluster.nodes.split(",")}
    return {"redis_url": request.getfixturevalue("redis_url")}


@pytest.fixture
async def redis(redis_settings: dict[str, object]) -> AsyncIterator[Redis]:
    client = connect_redis(ChatSettings(_env_file=None, **redis_settings))  # type: ignore[call-arg,arg-type]
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


@dataclass(frozen=True)
class CassandraEndpoint:
    hosts: list[str]
    port: int

    def settings(self, keyspace: str) -> dict[str, object]:
        """The settings fields that point a service at this node and keyspace."""
        return {
            "store": "cassandra",
            "cassandra_hosts": self.hosts,
            "cassandra_port": self.port,
            "cassandra_keyspace": keyspace,
            # What production runs at: a quorum of the local replicas (one, here).
            "cassandra_consistency": "LOCAL_QUORUM",
        }

    def env(self, keyspace: str) -> dict[str, str]:
        """The same, as the CHAT_ variables a service process reads."""
        return {
            f"CHAT_{name.upper()}": ",".join(value) if isinstance(value, list) else str(value)
            for name, value in self.settings(keyspace).items()
        }


@pytest.fixture(scope="session")
def cassandra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CassandraEndpoint]:
    """A real Cassandra node for the run, started on first use.

    CHAT_CASSANDRA_HOSTS (and CHAT_CASSANDRA_PORT) point the tests at a running
    cluster instead. Where Java or Maven is missing the tests skip with that reason,
    except under CI=true, where CI must prove them: there the skip is a failure.
    """
    hosts = _hosts_from_environment()
    if hosts:
        yield CassandraEndpoint(hosts, int(os.environ.get("CHAT_CASSANDRA_PORT", "9042")))
        return
    node = CassandraNode(tmp_path_factory.mktemp("cassandra"))
    try:
        node.start()
    except CassandraUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Cassandra tests: {exc}", pytrace=False)
        pytest.skip(f"Cassandra tests skipped: {exc}")
    yield CassandraEndpoint([node.host], node.native_port)
    node.stop()


def _hosts_from_environment() -> list[str]:
    value = os.environ.get("CHAT_CASSANDRA_HOSTS", "").strip()
    return [h.strip() for h in value.strip("[]").replace('"', "").split(",") if h.strip()]
