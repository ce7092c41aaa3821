"""The one place the auth service picks its storage engine from settings."""

from __future__ import annotations

import asyncio

from chat_auth.settings import AuthSettings
from chat_shared.ports.auth import AuthStore
from chat_shared.store.migrate import migrate_sqlite, sqlite_path

SERVICE = "auth"


async def open_auth_store(settings: AuthSettings) -> AuthStore:
    """Connect the engine ``settings.store`` names.

    SQLite is the embedded single-process default, so its (idempotent) migrations are
    applied here; a Cassandra schema is applied by ``chat-migrate`` (a Job in a
    cluster) before any service starts.
    """
    if settings.store == "cassandra":
        from chat_auth.storage.cassandra import CassandraAuthStore
        from chat_shared.store.cassandra import CassandraStore

        store = await asyncio.to_thread(
            CassandraStore.connect, settings, keyspace=settings.cassandra_keyspace
        )
        return CassandraAuthStore(
            store, refresh_retention_seconds=settings.refresh_token_ttl_seconds
        )

    from chat_auth.storage.sqlite import SqliteAuthStore

    await asyncio.to_thread(migrate_sqlite, settings, SERVICE)
    return SqliteAuthStore.open(sqlite_path(settings, SERVICE))
