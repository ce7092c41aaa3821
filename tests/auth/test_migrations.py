"""The auth schema's migrations: an existing database upgrades in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chat_auth.settings import AuthSettings
from chat_auth.storage import open_auth_store
from chat_shared.ids import new_id
from chat_shared.store import migrate
from chat_shared.store.migrate import load_migrations, migrate_sqlite, sqlite_path


def test_both_engines_ship_the_same_versions() -> None:
    versions = {
        engine: [(m.version, m.name) for m in load_migrations("auth", engine)]
        for engine in ("sqlite", "cassandra")
    }
    assert versions["sqlite"] == versions["cassandra"]
    assert (2, "last_active") in versions["sqlite"]


async def test_accounts_of_a_first_version_database_survive_the_upgrade(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = AuthSettings(data_dir=data_dir)
    first_only = load_migrations("auth", "sqlite")[:1]
    with monkeypatch.context() as patched:
        patched.setattr(migrate, "load_migrations", lambda service, engine: first_only)
        assert migrate_sqlite(settings, "auth") == [1]
    user_id = new_id()
    with sqlite3.connect(sqlite_path(settings, "auth")) as conn:
        conn.execute(
            "INSERT INTO users (id, username, email, email_key, display_name, password_hash,"
            " created_at) VALUES (?, 'old', 'old@example.com', 'old@example.com', 'Old',"
            " 'hash', 1700000000000)",
            (user_id,),
        )
    conn.close()

    store = await open_auth_store(settings)  # applies the remaining migrations
    try:
        user = await store.get_user(user_id)
        assert user is not None
        assert (user.username, user.last_active_at) == ("old", None)
    finally:
        await store.close()
    assert migrate_sqlite(settings, "auth") == []  # recorded: a second run does nothing
