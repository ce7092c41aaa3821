"""The store engines the end-to-end tests run on, and one stack of real processes
shared by the delivery tests of a module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import CassandraEndpoint
from tests.support.stack import RunningStack, start_stack


@pytest.fixture(scope="module", params=["sqlite", "cassandra"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """What points the services at the engine: nothing for the embedded SQLite, a fresh
    keyspace on the session's Cassandra node otherwise."""
    if request.param == "sqlite":
        return {}
    node: CassandraEndpoint = request.getfixturevalue("cassandra")
    return node.env(f"e2e_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def two_gateways(
    tmp_path_factory: pytest.TempPathFactory, store_env: dict[str, str]
) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("stack"), gateways=2, env=store_env)
    yield running
    running.stack.stop()
