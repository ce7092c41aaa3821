"""Versioned schema migrations for either engine.

Each service package ships ``migrations/sqlite/NNNN_name.sql`` and
``migrations/cassandra/NNNN_name.cql``. Applied versions are recorded per service, so
running the command again is a no-op. Usage::

    chat-migrate                      # every service, engine from CHAT_STORE
    chat-migrate --service history
    python -m chat_shared.store.migrate --service auth
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sqlite3
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from chat_shared.settings import ChatSettings

log = logging.getLogger(__name__)

# Services that own tables, and the package holding each one's migrations.
SERVICE_PACKAGES = {"auth": "chat_auth", "history": "chat_history"}
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sql|cql)$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    def statements(self) -> list[str]:
        # One statement per ';'-terminated chunk; our migration files keep ';' out of
        # string literals, which keeps this split honest.
        return [s.strip() for s in self.text.split(";") if s.strip() and not _only_comments(s)]


def _only_comments(chunk: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in chunk.splitlines())


def sqlite_path(settings: ChatSettings, service: str) -> Path:
    return settings.data_dir / f"{service}.db"


def load_migrations(service: str, engine: str) -> list[Migration]:
    package = SERVICE_PACKAGES[service]
    folder = resources.files(package) / "migrations" / engine
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions for {service}/{engine}")
    return found


def migrate_sqlite(settings: ChatSettings, service: str) -> list[int]:
    path = sqlite_path(settings, service)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        applied = []
        for migration in load_migrations(service, "sqlite"):
            if migration.version in done:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in migration.statements():
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            applied.append(migration.version)
        return applied
    finally:
        conn.close()


async def migrate_cassandra(settings: ChatSettings, service: str) -> list[int]:
    from chat_shared.store.cassandra import CassandraStore

    store = await asyncio.to_thread(CassandraStore.connect, settings)
    keyspace = settings.cassandra_keyspace
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,47}", keyspace):
        raise ValueError(f"invalid keyspace name {keyspace!r}")
    try:
        await store.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {keyspace} "
            f"WITH replication = {settings.cassandra_replication}",
            prepared=False,
        )
        await store.execute(
            f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations ("
            " service text, version int, name text, applied_at timestamp,"
            " PRIMARY KEY (service, version))",
            prepared=False,
        )
        await asyncio.to_thread(store.session.set_keyspace, keyspace)
        rows = await store.execute(
            "SELECT version FROM schema_migrations WHERE service = %s",
            (service,),
            prepared=False,
        )
        done = {row["version"] for row in rows}
        applied = []
        for migration in load_migrations(service, "cassandra"):
            if migration.version in done:
                continue
            for statement in migration.statements():
                await store.execute(statement, prepared=False)
            await store.execute(
                "INSERT INTO schema_migrations (service, version, name, applied_at)"
                " VALUES (%s, %s, %s, toTimestamp(now()))",
                (service, migration.version, migration.name),
                prepared=False,
            )
            applied.append(migration.version)
        return applied
    finally:
        store.close()


def migrate(settings: ChatSettings, services: list[str]) -> dict[str, list[int]]:
    result = {}
    for service in services:
        if settings.store == "cassandra":
            result[service] = asyncio.run(migrate_cassandra(settings, service))
        else:
            result[service] = migrate_sqlite(settings, service)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chat-migrate", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--service",
        action="append",
        choices=sorted(SERVICE_PACKAGES),
        help="service whose schema to migrate (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = ChatSettings()
    services = args.service or sorted(SERVICE_PACKAGES)
    for service, versions in migrate(settings, services).items():
        state = f"applied {versions}" if versions else "up to date"
        print(f"{service} ({settings.store}): {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
