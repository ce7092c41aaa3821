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
import os
import re
import socket
import sqlite3
import sys
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from chat_shared.settings import ChatSettings

if TYPE_CHECKING:
    from chat_shared.store.cassandra import CassandraStore

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
        # Comments go first (they may hold ';'), then one statement per ';'-terminated
        # chunk. Our migration files keep '--' and ';' out of string literals, which
        # keeps this split honest.
        code = "\n".join(line.split("--", 1)[0] for line in self.text.splitlines())
        return [chunk.strip() for chunk in code.split(";") if chunk.strip()]


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


# How long a migrator's lease lasts: a crashed migrator blocks the next one at most
# this long, never for ever.
LEASE_SECONDS = 120
# Errors that mean "this DDL already took effect": a statement that applied before a
# crash, but whose step record did not land, is then taken as done on the re-run.
_ALREADY_APPLIED = ("already exists", "conflicts with an existing column")


async def migrate_cassandra(settings: ChatSettings, service: str) -> list[int]:
    """Bring ``service``'s tables in the configured keyspace up to date.

    Invariants:
    - the keyspace's replication is the configured one after every run (ALTER runs
      each time; CREATE alone would only set it once);
    - one migrator at a time per service: a lightweight-transaction lease with a TTL,
      so a crashed migrator cannot leave the keyspace locked;
    - every statement is recorded in ``schema_steps`` once it applies, and a version
      in ``schema_migrations`` once all of its statements have, so a run interrupted
      anywhere resumes at the first statement not yet applied;
    - after every DDL statement the nodes agree on the schema before the next one.
    """
    from chat_shared.store.cassandra import CassandraStore

    keyspace = settings.cassandra_keyspace
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,47}", keyspace):
        raise ValueError(f"invalid keyspace name {keyspace!r}")
    store = await asyncio.to_thread(CassandraStore.connect, settings)
    try:
        replication = settings.cassandra_replication
        for ddl in (
            f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}",
            f"ALTER KEYSPACE {keyspace} WITH replication = {replication}",
            f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations ("
            " service text, version int, name text, applied_at timestamp,"
            " PRIMARY KEY (service, version))",
            f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_steps ("
            " service text, version int, step int, applied_at timestamp,"
            " PRIMARY KEY (service, version, step))",
            f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_leases ("
            " service text PRIMARY KEY, owner text)",
        ):
            await store.execute(ddl, prepared=False)
            await store.wait_for_schema_agreement()
        await asyncio.to_thread(store.session.set_keyspace, keyspace)
        async with _lease(store, service):
            return await _apply_pending(store, service)
    finally:
        store.close()


class _Lease:
    def __init__(self, store: CassandraStore, service: str) -> None:
        self.store = store
        self.service = service
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def __aenter__(self) -> None:
        deadline = time.monotonic() + LEASE_SECONDS + 30
        while True:
            rows = await self.store.execute(
                "INSERT INTO schema_leases (service, owner) VALUES (?, ?)"
                " IF NOT EXISTS USING TTL ?",
                (self.service, self.owner, LEASE_SECONDS),
                idempotent=False,
            )
            if rows[0]["[applied]"] or rows[0].get("owner") == self.owner:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"migration lease of {self.service} held by {rows[0]['owner']}")
            log.info("waiting for the migration lease held by %s", rows[0]["owner"])
            await asyncio.sleep(2)

    async def __aexit__(self, *exc: object) -> None:
        await self.store.execute(
            "DELETE FROM schema_leases WHERE service = ? IF owner = ?",
            (self.service, self.owner),
            idempotent=False,
        )


def _lease(store: CassandraStore, service: str) -> _Lease:
    return _Lease(store, service)


async def _apply_pending(store: CassandraStore, service: str) -> list[int]:
    from cassandra import InvalidRequest

    rows = await store.execute(
        "SELECT version FROM schema_migrations WHERE service = ?", (service,)
    )
    done = {row["version"] for row in rows}
    applied = []
    for migration in load_migrations(service, "cassandra"):
        if migration.version in done:
            continue
        steps = await store.execute(
            "SELECT step FROM schema_steps WHERE service = ? AND version = ?",
            (service, migration.version),
        )
        steps_done = {row["step"] for row in steps}
        for step, statement in enumerate(migration.statements()):
            if step in steps_done:
                continue
            try:
                await store.execute(statement, prepared=False)
            except InvalidRequest as exc:
                if not any(marker in str(exc) for marker in _ALREADY_APPLIED):
                    raise
                log.info("%s %04d step %d was already applied", service, migration.version, step)
            await store.wait_for_schema_agreement()
            await store.execute(
                "INSERT INTO schema_steps (service, version, step, applied_at)"
                " VALUES (?, ?, ?, toTimestamp(now()))",
                (service, migration.version, step),
            )
        await store.execute(
            "INSERT INTO schema_migrations (service, version, name, applied_at)"
            " VALUES (?, ?, ?, toTimestamp(now()))",
            (service, migration.version, migration.name),
        )
        applied.append(migration.version)
    return applied


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
