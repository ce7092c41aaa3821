"""The engines the end-to-end tests run on, and one stack of real processes shared by
the delivery tests of a module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import CassandraEndpoint
from tests.support.stack import RunningStack, start_stack


@pytest.fixture(scope="module", params=["sqlite", "cassandra", "redis-cluster", "redis-sentinel"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The engines under the stack: the embedded defaults (one Valkey, SQLite); the
    session's Cassandra node (a fresh keyspace); a local Valkey Cluster; or a primary,
    a replica and three Sentinels (both started by the stack under its data dir)."""
    if request.param == "cassandra":
        node: CassandraEndpoint = request.getfixturevalue("cassandra")
        return node.env(f"e2e_{uuid.uuid4().hex[:12]}")
    if request.param == "redis-cluster":
        return {"CHAT_REDIS_MODE": "cluster"}
    if request.param == "redis-sentinel":
        return {"CHAT_REDIS_MODE": "sentinel", "CHAT_REDIS_MIN_REPLICAS": "1"}
    return {}


@pytest.fixture(scope="module")
def two_gateways(
    tmp_path_factory: pytest.TempPathFactory, store_env: dict[str, str]
) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("stack"), gateways=2, env=store_env)
    yield running
    running.stack.stop()
