"""Migrations on a real Cassandra node: a fresh keyspace, a re-run, a run cut off after
its statements but before it recorded them, and replication that drifted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from chat_shared.settings import ChatSettings
from chat_shared.store.cassandra import CassandraStore
from chat_shared.store.migrate import load_migrations, migrate_cassandra
from tests.conftest import CassandraEndpoint

SERVICES = ("auth", "history")


@pytest.fixture
async def keyspace(cassandra: CassandraEndpoint) -> AsyncIterator[ChatSettings]:
    name = f"migrate_{uuid.uuid4().hex[:12]}"
    settings = ChatSettings(_env_file=None, **cassandra.settings(name))  # type: ignore[call-arg,arg-type]
    yield settings
    store = await asyncio.to_thread(CassandraStore.connect, settings)
    await store.execute(f"DROP KEYSPACE IF EXISTS {name}", prepared=False)
    await asyncio.to_thread(store.close)


async def query(settings: ChatSettings, cql: str, params: tuple[object, ...] = ()) -> list[dict]:  # type: ignore[type-arg]
    store = await asyncio.to_thread(CassandraStore.connect, settings)
    try:
        return await store.execute(cql, params, prepared=bool(params))
    finally:
        await asyncio.to_thread(store.close)


def versions(service: str) -> list[int]:
    return [m.version for m in load_migrations(service, "cassandra")]


async def tables(settings: ChatSettings) -> set[str]:
    rows = await query(
        settings,
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
        (settings.cassandra_keyspace,),
    )
    return {row["table_name"] for row in rows}


async def test_a_fresh_keyspace_gets_every_version_and_a_rerun_changes_nothing(
    keyspace: ChatSettings,
) -> None:
    for service in SERVICES:
        assert await migrate_cassandra(keyspace, service) == versions(service)
    created = await tables(keyspace)
    assert {"users", "users_by_username", "username_prefixes", "messages"} <= created
    assert "usernames_by_prefix" not in created, "dropped by auth 0003"
    for service in SERVICES:
        assert await migrate_cassandra(keyspace, service) == []
    assert await tables(keyspace) == created


async def test_a_run_cut_off_before_recording_resumes_and_finishes(
    keyspace: ChatSettings,
) -> None:
    await migrate_cassandra(keyspace, "auth")
    last = versions("auth")[-1]
    ks = keyspace.cassandra_keyspace
    # As if the migrator died after the last version's statements applied and
    # before any of them (or the version) was recorded.
    for table in ("schema_migrations", "schema_steps"):
        await query(
            keyspace,
            f"DELETE FROM {ks}.{table} WHERE service = 'auth' AND version = ?",  # noqa: S608
            (last,),
        )
    assert await migrate_cassandra(keyspace, "auth") == [last]
    recorded = await query(
        keyspace,
        f"SELECT version FROM {ks}.schema_migrations WHERE service = 'auth'",  # noqa: S608
    )
    assert sorted(row["version"] for row in recorded) == versions("auth")
    columns = await query(
        keyspace,
        "SELECT column_name FROM system_schema.columns"
        " WHERE keyspace_name = ? AND table_name = 'users_by_username'",
        (ks,),
    )
    assert "confirmed" in {row["column_name"] for row in columns}


async def test_replication_is_applied_on_every_run(keyspace: ChatSettings) -> None:
    await migrate_cassandra(keyspace, "history")
    ks = keyspace.cassandra_keyspace
    await query(
        keyspace,
        f"ALTER KEYSPACE {ks} WITH replication ="
        " {'class': 'SimpleStrategy', 'replication_factor': 3}",
    )
    await migrate_cassandra(keyspace, "history")
    rows = await query(
        keyspace,
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
        (ks,),
    )
    assert rows[0]["replication"]["replication_factor"] == "1"
