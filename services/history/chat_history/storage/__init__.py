"""The one place that picks the store engine from settings."""

from __future__ import annotations

from chat_history.settings import HistorySettings
from chat_shared.ports.history import HistoryStore
from chat_shared.store.migrate import sqlite_path


async def open_store(settings: HistorySettings) -> HistoryStore:
    if settings.store == "cassandra":
        from chat_history.storage.cassandra import CassandraHistoryStore

        return await CassandraHistoryStore.connect(
            settings, bucket_size=settings.message_bucket_size
        )
    from chat_history.storage.sqlite import SqliteHistoryStore

    return SqliteHistoryStore(
        sqlite_path(settings, "history"), bucket_size=settings.message_bucket_size
    )
